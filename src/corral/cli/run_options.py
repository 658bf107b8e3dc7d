"""``corral run``'s command line as typer declares it: the help, usage and error messages.

The program itself is :func:`corral.cli.run.run`. ``corral run`` parses plain command lines
with :func:`corral.cli.run.parse_fast` and comes here only for what that parser leaves to typer
(``--help``, mistakes, unusual spellings), so both must take the same options: a test compares
this signature with :func:`corral.cli.run.run`'s and typer's options with ``FAST_OPTIONS``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from corral.cli import run as program


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
    program.run(source, code, language, timeout, memory, pids, cpus, disk, env, isolation, allow_domain, expose,
                package, index_url, json_output)
