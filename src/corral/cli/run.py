"""``corral run``: run a program once in a sandbox; its exit code becomes ours.

Typer-free, so that ``corral run`` starts fast: :func:`corral.cli.run_args.parse_fast` takes
plain command lines (which go to the warm daemon first, :mod:`corral.cli.warm`), and typer
(:mod:`corral.cli.run_options`, with the help) everything else. This module runs the program
in-process; the daemon runs it with the same keyword arguments (:func:`run_keywords`) and ends
it the same way (:func:`ending`).
"""

from __future__ import annotations

import inspect
import signal
import sys
from collections.abc import Sequence
from typing import Any

from corral.cli.run_args import (
    EXIT_CORRAL_ERROR,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Ending,
    Program,
    fail,
    finish,
    program_or_exit,
    tell,
)
from corral.errors import CorralError, InvalidInputError, IsolationUnavailableError
from corral.models import ExecutionResult, Limits
from corral.network import ExposedPort, Network, PortMapping
from corral.sync import run as run_code


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
    """Run a program once in a sandbox of this process and exit with its exit code (raises SystemExit).

    The options are those of :mod:`corral.cli.run_options` (typer's declaration, with the help).
    """
    options = {name: value for name, value in locals().items() if name in OPTIONS}
    run_program(program_or_exit(source, code, language), options, json_output)


#: ``corral run``'s options that shape the run (the program's own arguments and ``--json`` aside), by name.
OPTIONS = frozenset(inspect.signature(run).parameters) - {"source", "code", "language", "json_output"}
_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(run).parameters.items()
             if name in OPTIONS}


def run_program(program: Program, options: dict[str, Any], json_output: bool = False) -> None:
    """Run ``program`` in a sandbox of this process, streaming its output, and exit with its exit code.

    ``options`` are the command line's, as :func:`corral.cli.run_args.parse_fast` names them
    (see :func:`run_keywords`).
    """
    try:
        result = run_code(**run_keywords(program, options), on_exposed=_announce_ports,
                          on_stdout=None if json_output else _writer(sys.stdout),
                          on_stderr=None if json_output else _writer(sys.stderr))
    except Exception as exc:
        failure = failure_of(exc)
        if failure is None:
            raise
        fail(*failure)
    finish(ending(result, options.get("timeout"), options.get("memory"), json_output))


def run_keywords(program: Program, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`corral.run` (and :func:`corral.arun`) for ``program`` and ``corral run``'s
    ``options`` (names as :data:`OPTIONS`; a missing one has :func:`run`'s default), without the output
    callbacks; raises InvalidInputError for an unknown option or a malformed ``--env`` or ``--expose``."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise InvalidInputError(f"unknown options: {', '.join(sorted(unknown))}")
    given = {**_DEFAULTS, **options}
    allow_domain, expose, package = given["allow_domain"], given["expose"], given["package"]
    return {
        "code": program.text,
        "language": program.language,
        "isolation": given["isolation"],
        "timeout": given["timeout"],
        "memory_mb": given["memory"],
        "pids": given["pids"],
        "cpus": given["cpus"],
        "disk_mb": given["disk"],
        "env": _parse_env(given["env"]),
        "stdin": program.stdin,
        "network": Network.allow(allow_domain) if allow_domain else None,
        "expose": [_parse_port(spec) for spec in expose] or None,
        "packages": list(package) or None,
        "index_url": given["index_url"],
    }


def failure_of(exc: BaseException) -> tuple[str, int] | None:
    """What ``corral run`` says and exits with when corral itself fails with ``exc``; None: not corral's failure."""
    if isinstance(exc, (InvalidInputError, ValueError)):
        return f"invalid input: {exc}", EXIT_USAGE
    if isinstance(exc, IsolationUnavailableError):
        return str(exc), EXIT_UNAVAILABLE
    if isinstance(exc, CorralError):
        return str(exc), EXIT_CORRAL_ERROR
    return None


def ending(result: ExecutionResult, timeout: float | None, memory: int | None, json_output: bool) -> Ending:
    """How ``corral run`` ends after ``result``: its exit code, the JSON it prints (``--json``), its notes."""
    return Ending(result.exit_code, result.model_dump_json(indent=2) + "\n" if json_output else None,
                  ending_notes(result, timeout, memory))


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


def _parse_port(spec: str) -> PortMapping:
    internal, _, external = spec.partition(":")
    try:
        return PortMapping(internal=int(internal), external=int(external) if external else None)
    except ValueError as exc:
        raise InvalidInputError(f"--expose takes PORT or PORT:HOSTPORT (1024-65535), got {spec!r}: {exc}") from None


def port_notes(ports: list[ExposedPort]) -> list[str]:
    """Where each exposed port of the sandbox is, one note each."""
    return [f"sandbox port {port.internal} is at {port.url}" for port in ports]


def _announce_ports(ports: list[ExposedPort]) -> None:
    tell(port_notes(ports))


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


