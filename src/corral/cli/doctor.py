"""``corral doctor``: which isolation levels work on this host, and why not."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from corral.backends import registry
from corral.errors import CorralError


def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    probe_kvm: Annotated[bool, typer.Option(
        "--probe-kvm", help="Boot a microVM guest under KVM now to learn whether KVM works here (cached per boot).",
    )] = False,
) -> None:
    """Probe every isolation level (by starting a real sandbox) and say what works here."""
    if probe_kvm:
        _probe_kvm(json_output)
    results = registry.probe_all()
    try:
        auto = registry.resolve("auto").name
    except CorralError as exc:
        auto = None
        auto_reason = str(exc)
    if json_output:
        report = {
            "auto": auto,
            "levels": {
                name: {"available": r.available, "reason": r.reason, "hardware_isolated": r.hardware_isolated,
                       "details": r.details}
                for name, r in results.items()
            },
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        console = Console()
        table = Table(title="corral isolation levels on this host")
        table.add_column("level")
        table.add_column("works")
        table.add_column("why")
        table.add_column("details")
        for name, result in results.items():
            details = "\n".join(f"{key}: {value}" for key, value in result.details.items())
            table.add_row(name, "[green]yes[/]" if result.available else "[red]no[/]", result.reason, details)
        console.print(table)
        console.print(f"isolation=\"auto\" uses: [bold]{auto}[/]" if auto else f"[red]{auto_reason}[/]")
    raise typer.Exit(0 if auto else 1)


def _probe_kvm(quiet: bool) -> None:
    """Run the microVM accelerator probe (building the guest image first if needed)."""
    from corral.backends.microvm.backend import probe_accelerator

    try:
        with Console(stderr=True).status("probing KVM: booting a guest under it (up to 10 s)", spinner="dots"):
            choice = probe_accelerator()
    except CorralError as exc:
        typer.echo(f"corral: the KVM probe could not run: {exc}", err=True)
        return
    if not quiet:
        Console().print(f"microVM accelerator: [bold]{choice.accel}[/] ({choice.reason})")
