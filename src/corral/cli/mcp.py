"""``corral mcp``: an MCP server (stdio, or streamable HTTP on loopback) with tools over corral's sandboxes."""

from __future__ import annotations

import importlib
import os
from typing import Annotated, Optional

import typer

#: Where ``--transport http`` may listen: the endpoint has no authentication; the MCP SDK checks the Host and
#: Origin headers of requests against these names (DNS rebinding).
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def mcp(
    server: Annotated[
        Optional[str], typer.Option(help="A corral server's URL (API key from $CORRAL_API_KEY); default: sandboxes "
                                         "in this process.")
    ] = None,
    transport: Annotated[str, typer.Option(help="stdio | http (streamable HTTP at http://HOST:PORT/mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="127.0.0.1, ::1 or localhost, for --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port for --transport http.")] = 8765,
    max_sandboxes: Annotated[int, typer.Option(min=1, max=1000, help="Sandboxes alive at once.")] = 4,
    sandbox_ttl: Annotated[
        float, typer.Option(min=1, max=86400, help="Seconds each sandbox lives unless killed first.")
    ] = 3600.0,
    max_output_chars: Annotated[
        int, typer.Option(min=200, help="Characters of text in one tool result (longer output is cut, with a note).")
    ] = 20_000,
) -> None:
    """Serve corral's sandboxes to an MCP client; every sandbox it created is killed when it exits."""
    if transport not in ("stdio", "http"):
        typer.echo(f"corral: --transport must be stdio or http, not {transport!r}", err=True)
        raise typer.Exit(2)
    if transport == "http" and host not in LOOPBACK:
        typer.echo(f"corral: refusing --host {host}: the MCP endpoint has no authentication, so it listens on "
                   f"loopback only ({', '.join(LOOPBACK)})", err=True)
        raise typer.Exit(2)
    if server is not None and not os.environ.get("CORRAL_API_KEY"):
        typer.echo("corral: --server needs an API key in $CORRAL_API_KEY", err=True)
        raise typer.Exit(2)
    try:
        # the mcp extra is needed by this command only: `corral --help` and the other commands work without it
        anyio = importlib.import_module("anyio")
        server_module = importlib.import_module("corral.mcp.server")
    except ImportError as exc:
        typer.echo(f"corral: `corral mcp` needs the mcp extra: pip install 'corral[mcp]' ({exc})", err=True)
        raise typer.Exit(3) from None
    config = server_module.McpConfig(server=server, max_sandboxes=max_sandboxes, sandbox_ttl_s=sandbox_ttl,
                                     max_output_chars=max_output_chars)
    anyio.run(lambda: server_module.serve(config, transport, host=host, port=port))
