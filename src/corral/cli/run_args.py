"""``corral run``'s command line without typer or pydantic: the fast parser, the program it names, the exit codes.

Stdlib only (with corral's errors and the protocol's limits), so that a plain
``corral run`` reaches the warm daemon (:mod:`corral.cli.warm`) before it
imports anything heavy; :mod:`corral.cli.run` runs the program in-process.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple, NoReturn

from corral.errors import InvalidInputError
from corral.protocol import wire

_EXTENSIONS = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".sh": "shell"}
#: Exit codes for failures of corral itself (the program's own codes pass through).
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CORRAL_ERROR = 4
#: The options :func:`parse_fast` knows: spelling -> (parameter of :func:`corral.cli.run.run`, kind). Kinds: ``text``,
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


def parse_fast(args: list[str]) -> dict[str, Any] | None:
    """``corral run``'s arguments as keyword arguments of :func:`corral.cli.run.run`, or None to leave them to typer.

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


class Program(NamedTuple):
    """What ``corral run`` runs: the program text, its language and the stdin to forward (None: none)."""

    text: str
    language: str
    stdin: bytes | None


def read_program(source: str | None, code: str | None, language: str | None) -> Program:
    """The program the command-line arguments name (read now: a file, or stdin for ``-``), and the stdin to forward."""
    if (source is None) == (code is None):
        raise InvalidInputError("give exactly one of a program file, '-' (stdin) or --code/-c")
    stdin = None
    if code is not None:
        text = code
    elif source == "-":
        text = sys.stdin.read(wire.MAX_CODE_BYTES + 1)
    else:
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {source}: {exc}") from None
        language = language or _EXTENSIONS.get(os.path.splitext(source)[1])
    if source != "-" and not sys.stdin.isatty():
        stdin = sys.stdin.buffer.read(wire.MAX_STDIN_BYTES + 1) or None
    return Program(text, language or "python", stdin)


def program_or_exit(source: str | None, code: str | None, language: str | None) -> Program:
    """:func:`read_program`, or exit as ``corral run`` does for invalid input (exit code 2)."""
    try:
        return read_program(source, code, language)
    except InvalidInputError as exc:
        fail(f"invalid input: {exc}", EXIT_USAGE)


def fail(message: str, code: int) -> NoReturn:
    """Tell the user why corral itself failed and exit with ``code`` (raises SystemExit)."""
    tell([message])
    raise SystemExit(code)


class Ending(NamedTuple):
    """How ``corral run`` ends: the exit code, what it prints on stdout (``--json``; None: nothing) and its notes."""

    exit_code: int
    stdout: str | None
    notes: list[str]


def tell(notes: list[str]) -> None:
    """Write each of ``notes`` to stderr as a line of corral's own."""
    for note in notes:
        sys.stderr.write(f"corral: {note}\n")
    sys.stderr.flush()


def finish(ending: Ending) -> NoReturn:
    """Print what ``ending`` says and exit with its code (raises SystemExit)."""
    if ending.stdout is not None:
        sys.stdout.write(ending.stdout)
    tell(ending.notes)
    raise SystemExit(ending.exit_code)
