"""``corral template build FILE``: build a template from a TOML or JSON definition, with progress."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from corral.client.sync import HostedSandbox
from corral.errors import CorralError, InvalidInputError

app = typer.Typer(help="Build and manage sandbox templates.", no_args_is_help=True)

EXIT_INVALID = 2
EXIT_FAILED = 4


@app.command("build")
def build(
    file: Annotated[Path, typer.Argument(help="Template definition (.toml or .json).")],
    server: Annotated[Optional[str], typer.Option(help="corral server URL (default: build in process).")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="API key [default: $CORRAL_API_KEY].",
                                                   show_default=False)] = None,
) -> None:
    """Build a template; an identical definition is not built again. Prints the template's id."""
    try:
        definition = _load(file)
        info = HostedSandbox.build_template(definition, server=server, api_key=api_key,
                                            on_progress=_show_progress)
    except InvalidInputError as exc:
        typer.echo(f"corral: invalid template: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    except CorralError as exc:
        typer.echo(f"corral: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    note = " (already built)" if info.cached else f" in {info.build_seconds:.1f} s"
    typer.echo(f"corral: template {info.name} built{note}: {info.file_count} files, {info.size_bytes} bytes",
               err=True)
    typer.echo(info.id)


def _load(file: Path) -> dict:
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {file}: {exc}") from None
    try:
        return json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{file} is not valid {'JSON' if file.suffix == '.json' else 'TOML'}: {exc}") from None


def _show_progress(step: int, total: int, message: str) -> None:
    sys.stderr.write(f"[{step}/{total}] {message}\n")
    sys.stderr.flush()
