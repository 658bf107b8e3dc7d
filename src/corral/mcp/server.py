"""The MCP server: corral's tools (:mod:`corral.mcp.tools`) served over stdio or streamable HTTP.

It serves until the client goes (stdio: stdin closes) or a SIGTERM or SIGINT
comes, then kills every sandbox it created, in local and in server mode.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Literal

import anyio
import anyio.abc
import uvicorn
from mcp.server.mcpserver import MCPServer

import corral
from corral.mcp.sandboxes import McpConfig, Sandboxes
from corral.mcp.stdin_relay import StdinRelay
from corral.mcp.tools import ANNOTATIONS, SandboxTools

log = logging.getLogger("corral.mcp")

INSTRUCTIONS = (
    "Run code in corral sandboxes: isolated Linux machines with no network. Call create_sandbox once, then pass "
    "its sandbox_id to run_code (a session: variables and imports persist between calls), run_command (bash), "
    "write_file, read_file and list_files (relative paths start at /home/user). Kill the sandbox when done."
)


def build_server(sandboxes: Sandboxes) -> MCPServer:
    """An MCP server whose tools act on ``sandboxes``."""
    app = MCPServer("corral", version=corral.__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    for name, tool in SandboxTools(sandboxes).all().items():
        app.add_tool(tool, name=name, annotations=ANNOTATIONS[name])
    return app


async def serve(config: McpConfig, transport: Literal["stdio", "http"] = "stdio", *, host: str = "127.0.0.1",
                port: int = 8765) -> None:
    """Serve until the client goes (stdio: stdin closes) or SIGTERM/SIGINT; then kill every sandbox created."""
    sandboxes = Sandboxes(config)
    app = build_server(sandboxes)
    try:
        if transport == "stdio":
            await _serve_stdio(app)
        else:
            await _serve_http(app, host, port)
    finally:
        with anyio.CancelScope(shield=True):
            killed = await anyio.to_thread.run_sync(sandboxes.kill_all)
        log.info("killed %d sandbox(es) on exit", killed)


async def _serve_stdio(app: MCPServer) -> None:
    relay = StdinRelay()
    async with anyio.create_task_group() as group:
        group.start_soon(relay.run)
        await group.start(_on_signal, relay.stop)  # a signal ends the input: the server stops as at EOF
        await app.run_stdio_async()
        group.cancel_scope.cancel()


async def _serve_http(app: MCPServer, host: str, port: int) -> None:
    server = uvicorn.Server(uvicorn.Config(app.streamable_http_app(host=host), host=host, port=port,
                                           log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as group:
        await group.start(_on_signal, lambda: setattr(server, "should_exit", True))
        await server.serve()
        group.cancel_scope.cancel()


async def _on_signal(stop: Callable[[], None], *,
                     task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
    """Call ``stop`` at each SIGTERM or SIGINT (once listening, report ready)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            stop()
