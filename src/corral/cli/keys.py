"""``corral keys create/list/revoke``: API keys of a corral server (it may be running)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from corral.hosted.database import Database, default_state_dir
from corral.hosted.keys import SCOPES, KeyStore
from corral.hosted.state_dir import open_state_dir

app = typer.Typer(help="Manage the API keys of a corral server.", no_args_is_help=True)

DataDir = Annotated[Optional[Path], typer.Option(help="The server's state directory [default: <corral data dir>/server].")]


def _store(data_dir: Path | None) -> KeyStore:
    return KeyStore(Database(open_state_dir(data_dir or default_state_dir()).database))


@app.command("create")
def create(name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
           scope: Annotated[Optional[str], typer.Option(
               help="Limit the key to one front-end: sandbox-fusion (its /run_code only).")] = None,
           data_dir: DataDir = None) -> None:
    """Create a key and print it (it is shown only this once; only its hash is stored)."""
    if scope is not None and scope not in SCOPES:
        typer.echo(f"corral: unknown scope {scope!r}; choose one of {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    record, key = _store(data_dir).create(name, scope)
    typer.echo(key)
    typer.echo(f"corral: key {record.id} ({name}{', scope ' + scope if scope else ''}) created", err=True)


@app.command("list")
def list_keys(data_dir: DataDir = None) -> None:
    """List keys: id, name, created, revoked, scope (never the secrets)."""
    for key in _store(data_dir).list():
        revoked = _when(key.revoked_at) if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.name}\t{_when(key.created_at)}\t{revoked}\t{key.scope or 'all'}")


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `corral keys list`).")],
           data_dir: DataDir = None) -> None:
    """Revoke a key; a running server refuses it from the next request."""
    if not _store(data_dir).revoke(key_id):
        typer.echo(f"corral: no active key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"corral: key {key_id} revoked", err=True)


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
