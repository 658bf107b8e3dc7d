"""``corral run``: run a program once in a fresh sandbox; its exit code becomes ours.

Typer-free, so that ``corral run`` starts fast: :func:`parse_fast` takes plain command
lines, and typer (:mod:`corral.cli.run_options`, with the help) everything else.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
#: The options :func:`parse_fast` knows: spelling -> (parameter of :func:`run`, kind). Kinds: ``text``,
#: ``int``, ``float``, ``many`` (repeatable text), ``flag``. A test checks them against typer's declaration.
FAST_OPTIONS = {
    "--code": ("code", "text"), "-c": ("code", "text"),
    "--language": ("language", "text"), "-l": ("language", "text"),
    "--timeout": ("timeout", "float"), "--memory": ("memory", "int"), "--pids": ("pids", "int"),
    "--cpus": ("cpus", "float"), "--disk": ("disk", "int"),
    "--env": ("env", "many"), "-e": ("env", "many"),
    "--isolation": ("isolation", "text"),
    "--allow-domain": ("allow_domain", "many"), "--expose": ("expose", "many"), "--package": ("package", "many"),
    "--index-url": ("index_url", "text"),
    "--json": ("json_output", "flag"),
}


def run(
    source: str | None = None,
    code: str | None = None,
    language: str | None = None,
    timeout: float | None = None,
    memory: int | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    disk: int | None = None,
    env: Sequence[str] = (),
    isolation: str = "auto",
    allow_domain: Sequence[str] = (),
    expose: Sequence[str] = (),
    package: Sequence[str] = (),
    index_url: str | None = None,
    json_output: bool = False,
) -> None:
    """Run a program once in a fresh sandbox and exit with its exit code (raises SystemExit).

    The options are those of :mod:`corral.cli.run_options` (typer's declaration, with the help).
    """
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
    raise SystemExit(result.exit_code)


def parse_fast(args: list[str]) -> dict[str, Any] | None:
    """``corral run``'s arguments as keyword arguments of :func:`run`, or None to leave them to typer.

    Only plain spellings are taken (``--name value``, ``--name=value``, ``-c value``, numbers in
    digits, each option at most once unless repeatable): ``--help``, mistakes and anything unusual
    give None, so typer answers those exactly as it always did.
    """
    arguments: dict[str, Any] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "-" or not arg.startswith("-"):
            if "source" in arguments:
                return None
            arguments["source"] = arg
            continue
        name, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        parameter, kind = FAST_OPTIONS.get(name, (None, None))
        if parameter is None or (kind != "many" and parameter in arguments):
            return None
        if kind == "flag":
            if equals:
                return None
            arguments[parameter] = True
            continue
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        if kind == "many":
            arguments.setdefault(parameter, []).append(value)
        elif kind == "text":
            arguments[parameter] = value
        else:
            number = _plain_number(value, kind)
            if number is None:
                return None
            arguments[parameter] = number
    return arguments


def _plain_number(text: str, kind: str) -> int | float | None:
    """``text`` as an int or float if it is plain ASCII digits (with one ``.`` for a float), else None."""
    whole, dot, fraction = text.partition(".")
    digits = whole.isascii() and whole.isdigit() and (not dot or (fraction.isascii() and fraction.isdigit()))
    if not digits or (dot and kind == "int"):
        return None
    return int(text) if kind == "int" else float(text)


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


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
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
    raise SystemExit(code)
