"""The ``corral`` command line: one module per command.

:func:`main` loads only what the command it is asked for needs. ``corral run``
with plain options (the common case) is parsed by
:func:`corral.cli.run_args.parse_fast`, without typer at all, and goes to the warm daemon
(:mod:`corral.cli.warm`) before anything heavy is imported; run in-process, it skips pydantic's
plugin search (``PYDANTIC_NO_PLUGINS``). Anything else builds a
typer app (:mod:`corral.cli.typer_app`) with only that command, or with every command
for ``corral --help``. When the command ends, every object is frozen (``gc.freeze``) so that
the interpreter's exit does not collect what the process is about to drop anyway. ``app`` is the whole typer app, built on first access.
"""

from __future__ import annotations

import errno
import gc
import importlib
import os
import sys
from collections.abc import Callable


#: ``corral run`` needs no pydantic plugin, and looking for them (importing importlib.metadata, scanning
#: every installed package's entry points) is about 4 ms of its start; a value already set is kept.
#: Sandboxes never see the variable (their environment is built from scratch).
PYDANTIC_NO_PLUGINS = ("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main() -> None:
    """Console-script entry point."""
    try:
        _main(sys.argv[1:])
    finally:
        # the process ends with the command: its garbage (pydantic's schemas, typing's caches...) needs no
        # collection, and the interpreter's last collections of everything took 50-80 ms of `corral run`
        gc.freeze()


def _main(args: list[str]) -> None:
    if args[:1] == ["run"]:
        os.environ.setdefault(*PYDANTIC_NO_PLUGINS)
        run_args = importlib.import_module("corral.cli.run_args")
        arguments = run_args.parse_fast(args[1:])
        if arguments is not None:
            _exit_as_typer_does(lambda: _run_plain(run_args, arguments))
            return
    importlib.import_module("corral.cli.typer_app").main(args)


def _run_plain(run_args, arguments: dict) -> None:
    """A plain ``corral run``: read the program, let the warm daemon run it, else run it here."""
    program = run_args.program_or_exit(arguments.pop("source", None), arguments.pop("code", None),
                                       arguments.pop("language", None))
    importlib.import_module("corral.cli.warm.client").run(program, arguments)  # returns if no daemon ran it
    json_output = arguments.pop("json_output", False)
    importlib.import_module("corral.cli.run").run_program(program, arguments, json_output)


def _exit_as_typer_does(command: Callable[[], None]) -> None:
    """Run ``command`` with the exits of typer's standalone mode: Ctrl-C 130, a closed stdout 1."""
    try:
        command()
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # nobody reads our output any more: let the final flush go nowhere, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def __getattr__(name: str) -> object:
    if name == "app":
        app = globals()["app"] = importlib.import_module("corral.cli.typer_app").build_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
