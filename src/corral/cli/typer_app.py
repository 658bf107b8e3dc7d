"""The typer app of the ``corral`` command line, with every command or with just one."""

from __future__ import annotations

import importlib

import typer

#: Every command, in the order ``corral --help`` lists them: name -> (module in corral.cli, what it provides).
COMMANDS = {
    "run": ("run_options", "command"),
    "doctor": ("doctor", "command"),
    "image": ("image", "group"),
    "serve": ("serve", "command"),
    "keys": ("keys", "group"),
    "template": ("template", "group"),
    "mcp": ("mcp", "command"),
    "daemon": ("daemon", "group"),
}


def build_app(names: tuple[str, ...] = tuple(COMMANDS)) -> typer.Typer:
    """The typer app with the commands ``names`` (default: all of them); only their modules are imported."""
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
        module_name, kind = COMMANDS[name]
        module = importlib.import_module(f"corral.cli.{module_name}")
        if kind == "group":
            app.add_typer(module.app, name=name)
        elif name == "run":
            app.command("run", context_settings={"allow_interspersed_args": True})(module.run)
        else:
            app.command(name)(getattr(module, name))
    return app


def main(args: list[str]) -> None:
    """Run the command line ``args`` (without the program name) through typer."""
    name = args[0] if args else None
    build_app((name,) if name in COMMANDS else tuple(COMMANDS))(args)


def _corral() -> None:
    pass
