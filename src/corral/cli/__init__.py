"""The ``corral`` command line: one module per command."""

from __future__ import annotations

import typer

from corral.cli import doctor, image, keys, run, serve, template

app = typer.Typer(
    name="corral",
    help="Run untrusted code in sandboxes you host yourself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run", context_settings={"allow_interspersed_args": True})(run.run)
app.command("doctor")(doctor.doctor)
app.add_typer(image.app, name="image")
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.add_typer(template.app, name="template")


def main() -> None:
    """Console-script entry point."""
    app()
