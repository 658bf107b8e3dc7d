"""``corral daemon start/status/stop``: the warm daemon that keeps ``corral run``'s sandboxes warm."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from corral.cli.warm import address, client

app = typer.Typer(help="The warm daemon that makes `corral run` start fast (see docs/cli.md).", no_args_is_help=True)

#: How long ``start`` waits for a new daemon to answer.
START_WAIT_S = 20.0


@app.command("start")
def start() -> None:
    """Start this user's daemon in the background (nothing happens if one runs already)."""
    if client.status() is None:
        problem = client.start()
        if problem is not None:
            typer.echo(f"corral: cannot start the daemon: {problem}", err=True)
            raise typer.Exit(1)
    answer = client.wait_until_serving(START_WAIT_S)
    if answer is None:
        typer.echo(f"corral: the daemon did not start; see {address.log_path()}", err=True)
        raise typer.Exit(1)
    typer.echo(f"corral: daemon {answer['pid']} serves {answer['socket']}", err=True)


@app.command("status")
def status(json_output: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False) -> None:
    """Whether this user's daemon runs, with its pid and the runs it served and runs now (exit 1: none)."""
    answer = client.status()
    if json_output:
        typer.echo(json.dumps(answer))
    elif answer is not None:
        typer.echo(f"daemon {answer['pid']}: {answer['served']} runs served, {answer['running']} running, "
                   f"exits after {answer['idle_s']:g} s idle; socket {answer['socket']}")
    else:
        typer.echo(f"no daemon answers at {address.socket_path()}")
    if answer is None:
        raise typer.Exit(1)


@app.command("stop")
def stop() -> None:
    """Stop this user's daemon; its running programs are killed."""
    if not client.stop():
        typer.echo("corral: no daemon was running", err=True)
        return
    typer.echo("corral: daemon stopped", err=True)
