"""``corral image``: build, list and remove the microVM guest images."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from corral.backends.microvm import image, snapshot
from corral.errors import CorralError

app = typer.Typer(help="Build, list and remove the microVM guest images.", no_args_is_help=True)
#: Exit code when the image cannot be built or removed (as ``corral run`` uses for an unavailable level).
EXIT_FAILED = 3


@app.command("build")
def build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image for these inputs exists.")] = False,
) -> None:
    """Build the guest image for this corral version (a cached image is reused unless --force)."""
    console = Console()
    started = time.perf_counter()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("checking the cache", total=None)

            def report(step: str, done: int, total: int) -> None:
                progress.update(task, description=step, completed=done, total=total or None)

            built = image.ensure_image(report, force=force)
    except CorralError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_FAILED) from exc
    console.print(f"image [bold]{built.key}[/] ({built.kernel_version}, {_size(built.size_bytes)}) "
                  f"ready in {time.perf_counter() - started:.1f} s")
    console.print(str(built.directory), soft_wrap=True)


@app.command("list")
def list_() -> None:
    """List the built guest images, newest first."""
    table = Table(title=f"guest images in {image.images_dir()}")
    for column in ("key", "kernel", "size", "created"):
        table.add_column(column, no_wrap=True)
    for found in image.list_images():
        created = datetime.fromtimestamp(found.created).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(found.key, found.kernel_version, _size(found.size_bytes), created)
    Console().print(table)


@app.command("rm")
def remove(key: Annotated[str, typer.Argument(help="Key of the image (see `corral image list`).")]) -> None:
    """Remove one guest image."""
    try:
        image.remove_image(key)
        snapshot.remove_templates(lambda of: of.split("-")[0] == key)
    except CorralError as exc:
        Console(stderr=True).print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_FAILED) from exc
    typer.echo(f"removed {key}")


def _size(size: int) -> str:
    return f"{size / 2**20:.0f} MB"
