"""The ``corral`` command line: one module per command.

:func:`main` imports only the module of the command it is asked for, so
``corral run`` does not pay for the server, the HTTP client, rich or the
microVM image builder; ``corral --help`` (or anything that is not a command
name) builds the whole app. ``app`` is the whole app, built on first access.
"""

from __future__ import annotations

import importlib
import sys

import typer

#: Every command, in the order ``corral --help`` lists them, and how each module provides it.
_COMMANDS = {"run": "command", "doctor": "command", "image": "group", "serve": "command", "keys": "group",
             "template": "group"}


def build_app(names: tuple[str, ...] = tuple(_COMMANDS)) -> typer.Typer:
    """The typer app with the commands ``names`` (default: all of them)."""
    app = typer.Typer(
        name="corral",
        help="Run untrusted code in sandboxes you host yourself.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # a callback keeps the app a group even with one command, so `corral run ...` parses the same either way
    app.callback()(_corral)
    for name in names:
        module = importlib.import_module(f"corral.cli.{name}")
        if _COMMANDS[name] == "group":
            app.add_typer(module.app, name=name)
        elif name == "run":
            app.command("run", context_settings={"allow_interspersed_args": True})(module.run)
        else:
            app.command(name)(getattr(module, name))
    return app


def _corral() -> None:
    pass


def main() -> None:
    """Console-script entry point."""
    name = sys.argv[1] if len(sys.argv) > 1 else None
    build_app((name,) if name in _COMMANDS else tuple(_COMMANDS))()


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        app = globals()["app"] = build_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
