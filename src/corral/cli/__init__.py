"""The ``corral`` command line: one module per command."""

from __future__ import annotations

import typer

from corral.cli import doctor, run
from corral.cli import keys, serve, template  # corral server

app = typer.Typer(
    name="corral",
    help="Run untrusted code in sandboxes you host yourself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run", context_settings={"allow_interspersed_args": True})(run.run)
app.command("doctor")(doctor.doctor)
# corral server
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.add_typer(template.app, name="template")


def main() -> None:
    """Console-script entry point."""
    app()
