"""``corral run``: run a program once in a fresh sandbox; its exit code becomes ours."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from corral.errors import CorralError, InvalidInputError, IsolationUnavailableError
from corral.models import ExecutionResult, Limits
from corral.network import ExposedPort, Network, PortMapping
from corral.protocol import wire
from corral.sync import run as run_code

_EXTENSIONS = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".sh": "shell"}
#: Exit codes for failures of corral itself (the program's own codes pass through).
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CORRAL_ERROR = 4


def run(
    source: Annotated[Optional[str], typer.Argument(help="Program file, or - to read the program from stdin.")] = None,
    code: Annotated[Optional[str], typer.Option("--code", "-c", help="Program text.")] = None,
    language: Annotated[
        Optional[str], typer.Option("--language", "-l", help="python | javascript | shell (default: from the file name, else python).")
    ] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Wall-clock limit in seconds [default: 30].")] = None,
    memory: Annotated[Optional[int], typer.Option(help="Memory limit in MB [default: 256].")] = None,
    pids: Annotated[Optional[int], typer.Option(help="Limit on processes and threads [default: 256].")] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPU share, 1.0 = one core [default: 1.0].")] = None,
    disk: Annotated[
        Optional[int], typer.Option(help="Size in MB of each writable tmpfs (home, /tmp); it is memory (default: derived from --memory).")
    ] = None,
    env: Annotated[list[str], typer.Option("--env", "-e", help="NAME=value, repeatable.")] = [],  # noqa: B006
    isolation: Annotated[str, typer.Option(help="auto | process | microvm (see corral doctor).")] = "auto",
    allow_domain: Annotated[
        list[str], typer.Option("--allow-domain", help="Host name (or *.domain) the program may reach over HTTP(S); repeatable.")
    ] = [],  # noqa: B006
    expose: Annotated[
        list[str], typer.Option("--expose", help="Sandbox TCP port to expose on 127.0.0.1: PORT or PORT:HOSTPORT; repeatable.")
    ] = [],  # noqa: B006
    package: Annotated[
        list[str], typer.Option("--package", help="Pinned package to install first (name==1.2.3, npm: name@1.2.3); repeatable.")
    ] = [],  # noqa: B006
    index_url: Annotated[Optional[str], typer.Option(help="Package index (pip) or registry (npm) URL.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the ExecutionResult as JSON instead of streaming.")] = False,
) -> None:
    """Run a program once in a fresh sandbox and exit with its exit code."""
    try:
        program, language, stdin = _program(source, code, language)
        variables = _parse_env(env)
        result = run_code(
            program,
            language,
            isolation=isolation,
            timeout=timeout,
            memory_mb=memory,
            pids=pids,
            cpus=cpus,
            disk_mb=disk,
            env=variables,
            stdin=stdin,
            network=Network.allow(allow_domain) if allow_domain else None,
            expose=[_parse_port(spec) for spec in expose] or None,
            packages=package or None,
            index_url=index_url,
            on_exposed=_announce_ports,
            on_stdout=None if json_output else _writer(sys.stdout),
            on_stderr=None if json_output else _writer(sys.stderr),
        )
    except (InvalidInputError, ValueError) as exc:
        _fail(f"invalid input: {exc}", EXIT_USAGE)
    except IsolationUnavailableError as exc:
        _fail(str(exc), EXIT_UNAVAILABLE)
    except CorralError as exc:
        _fail(str(exc), EXIT_CORRAL_ERROR)
    if json_output:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    for note in ending_notes(result, timeout, memory):
        sys.stderr.write(f"corral: {note}\n")
    raise typer.Exit(result.exit_code)


def ending_notes(result: ExecutionResult, timeout: float | None, memory: int | None) -> list[str]:
    """What the user should know about how the run ended, beyond its exit code (one line each)."""
    notes = []
    if result.timed_out:
        limit = timeout if timeout is not None else Limits().timeout
        notes.append(f"the program timed out after {limit:g} s and was killed")
    elif result.oom_killed:
        limit = memory if memory is not None else Limits().memory_mb
        notes.append(f"the program ran out of memory (limit {limit} MB) and was killed")
    elif result.cancelled:
        notes.append("the run was cancelled and the program killed")
    elif result.signal is not None:
        notes.append(f"the program was killed by signal {_signal_name(result.signal)}")
    for stream, flag in (("stdout", result.stdout_truncated), ("stderr", result.stderr_truncated)):
        if flag:
            notes.append(f"{stream} was truncated at the output limit")
    return notes


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)


def _program(source: str | None, code: str | None, language: str | None) -> tuple[str, str, bytes | None]:
    """Program text, language and stdin to forward, from the command-line arguments."""
    if (source is None) == (code is None):
        raise InvalidInputError("give exactly one of a program file, '-' (stdin) or --code/-c")
    stdin = None
    if code is not None:
        program = code
    elif source == "-":
        program = sys.stdin.read(wire.MAX_CODE_BYTES + 1)
    else:
        path = Path(source)
        try:
            program = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {source}: {exc}") from None
        language = language or _EXTENSIONS.get(path.suffix)
    if source != "-" and not sys.stdin.isatty():
        stdin = sys.stdin.buffer.read(wire.MAX_STDIN_BYTES + 1) or None
    return program, language or "python", stdin


def _parse_port(spec: str) -> PortMapping:
    internal, _, external = spec.partition(":")
    try:
        return PortMapping(internal=int(internal), external=int(external) if external else None)
    except ValueError as exc:
        raise InvalidInputError(f"--expose takes PORT or PORT:HOSTPORT (1024-65535), got {spec!r}: {exc}") from None


def _announce_ports(ports: list[ExposedPort]) -> None:
    for port in ports:
        sys.stderr.write(f"corral: sandbox port {port.internal} is at {port.url}\n")
    sys.stderr.flush()


def _parse_env(pairs: list[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"--env takes NAME=value, got {pair!r}")
        variables[name] = value
    return variables


def _writer(stream):
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"corral: {message}\n")
    raise typer.Exit(code)
