"""The MCP server: corral's tools, served over stdio or streamable HTTP.

Each tool is one call of corral's hosted-sandbox API (``corral.Sandbox.create``
and the handle's ``run``, ``commands.run``, ``files``, ``kill``) on a sandbox
named by the id ``create_sandbox`` returned. A corral error becomes an MCP
tool error with corral's message; a run stopped by a limit (timeout, memory)
is a tool error too, with its output. Tools are plain functions: the SDK runs
them on worker threads, and they use corral's synchronous API.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Annotated, Literal

import anyio
import anyio.abc
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from corral.errors import CorralError, InvalidInputError
from corral.mcp.content import (
    IMAGE_SUFFIXES,
    background_text,
    execution_content,
    failed,
    listing_text,
    truncate,
)
from corral.mcp.sandboxes import McpConfig, Sandboxes
from corral.mcp.stdin_relay import StdinRelay
from corral.models import BackgroundCommand

log = logging.getLogger("corral.mcp")

INSTRUCTIONS = (
    "Run code in corral sandboxes: isolated Linux machines with no network. Call create_sandbox once, then pass "
    "its sandbox_id to run_code (a session: variables and imports persist between calls), run_command (bash), "
    "write_file, read_file and list_files (relative paths start at /home/user). Kill the sandbox when done."
)
SandboxId = Annotated[str, Field(description="The id create_sandbox returned.")]
Encoding = Literal["utf-8", "base64"]


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn corral's errors into MCP tool errors that carry corral's message."""
    try:
        yield
    except CorralError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from exc


def _text(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)])


def build_server(sandboxes: Sandboxes) -> MCPServer:
    """An MCP server whose tools act on ``sandboxes``."""
    config = sandboxes.config
    limit = config.max_output_chars
    app = MCPServer("corral", instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @app.tool(annotations=ToolAnnotations(open_world_hint=False))
    def create_sandbox(
        template: Annotated[str, Field(description="python, javascript or shell (the session language), or the "
                                                   "name of a template built on the corral server.")] = "python",
        env: Annotated[dict[str, str] | None, Field(description="Environment variables for everything run in it.")]
        = None,
        memory_mb: Annotated[int | None, Field(description="Memory limit in MB (default 256).")] = None,
        run_timeout: Annotated[float | None, Field(description="Default time limit of one run, in seconds "
                                                               "(default 30).")] = None,
    ) -> CallToolResult:
        """Start a sandbox and return its id. It stays alive (files, session variables) until killed or until
        its time to live passes."""
        with _tool_errors():
            sandbox = sandboxes.create(template, env=env, memory_mb=memory_mb, run_timeout=run_timeout)
        info = sandbox.info
        expires = f"; it expires in {info.expires_at - time.time():.0f} s" if info.expires_at else ""
        return CallToolResult(
            content=[TextContent(type="text", text=f"sandbox_id: {sandbox.id}\nlanguage: {info.language}{expires}")],
            structured_content={"sandbox_id": sandbox.id, "language": info.language, "expires_at": info.expires_at},
        )

    @app.tool(annotations=read_only)
    def list_sandboxes() -> CallToolResult:
        """The ids of the sandboxes this MCP server created and has not killed."""
        ids = sandboxes.ids()
        return _text("\n".join(ids) if ids else "no sandbox: create one with create_sandbox")

    @app.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False))
    def kill_sandbox(sandbox_id: SandboxId) -> CallToolResult:
        """Stop a sandbox; its files and processes are gone."""
        with _tool_errors():
            sandboxes.kill(sandbox_id)
        return _text(f"killed {sandbox_id}")

    @app.tool(annotations=ToolAnnotations(open_world_hint=False))
    def run_code(
        sandbox_id: SandboxId,
        code: Annotated[str, Field(description="The code to run.")],
        language: Annotated[Literal["python", "javascript", "shell", "cpp"] | None,
                            Field(description="Default: the sandbox's language.")] = None,
        timeout: Annotated[float | None, Field(description="Time limit in seconds (default: the sandbox's).")]
        = None,
    ) -> CallToolResult:
        """Run code in the sandbox's interpreter session: Python and JavaScript keep variables, imports and
        definitions between calls (shell and cpp run once). Returns the exit code, stdout and stderr, and images
        the code displayed."""
        with _tool_errors():
            result = sandboxes.get(sandbox_id).run(code, language=language, timeout=timeout)
        return CallToolResult(content=execution_content(result, limit, timeout), is_error=failed(result))

    @app.tool(annotations=ToolAnnotations(open_world_hint=False))
    def run_command(
        sandbox_id: SandboxId,
        command: Annotated[str, Field(description="A bash command line.")],
        cwd: Annotated[str | None, Field(description="Working directory (default /home/user).")] = None,
        env: Annotated[dict[str, str] | None, Field(description="Extra environment variables.")] = None,
        stdin: Annotated[str | None, Field(description="Text fed to the command's standard input.")] = None,
        timeout: Annotated[float | None, Field(description="Time limit in seconds (default: the sandbox's).")]
        = None,
        background: Annotated[bool, Field(description="Start it and return at once (for servers); its output "
                                                      "goes to a log file.")] = False,
    ) -> CallToolResult:
        """Run a shell command (bash -c) as a fresh process in the sandbox; files are shared with run_code."""
        with _tool_errors():
            if background and (stdin is not None or timeout is not None):
                raise InvalidInputError("a background command takes no stdin or timeout")
            options = {} if background else {"stdin": stdin, "timeout": timeout}
            outcome = sandboxes.get(sandbox_id).commands.run(command, cwd=cwd, env=env, background=background,
                                                             **options)
        if isinstance(outcome, BackgroundCommand):
            return _text(background_text(outcome))
        return CallToolResult(content=execution_content(outcome, limit, timeout), is_error=failed(outcome))

    @app.tool(annotations=ToolAnnotations(idempotent_hint=True, open_world_hint=False))
    def write_file(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Relative to /home/user, or absolute under /home/user, /tmp.")],
        content: Annotated[str, Field(description="The file's contents (text, or base64 with encoding=base64).")],
        encoding: Annotated[Encoding, Field(description="How content is given.")] = "utf-8",
    ) -> CallToolResult:
        """Create or replace a file in the sandbox (parent directories are created)."""
        with _tool_errors():
            data = _decode(content) if encoding == "base64" else content.encode()
            size = sandboxes.get(sandbox_id).files.write(path, data)
        return _text(f"wrote {size} bytes to {path}")

    @app.tool(annotations=read_only)
    def read_file(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Relative to /home/user, or absolute.")],
        encoding: Annotated[Encoding, Field(description="utf-8: as text (PNG, JPEG, GIF and WebP files come back "
                                                        "as images); base64: the raw bytes.")] = "utf-8",
    ) -> CallToolResult:
        """Read a file from the sandbox."""
        with _tool_errors():
            data = sandboxes.get(sandbox_id).files.read(path)
            return CallToolResult(content=[_file_content(path, data, encoding, limit)])

    @app.tool(annotations=read_only)
    def list_files(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="A directory (default: /home/user).")] = ".",
    ) -> CallToolResult:
        """List a directory in the sandbox: kind, size, mode and name of each entry."""
        with _tool_errors():
            entries = sandboxes.get(sandbox_id).files.list(path)
        return _text(listing_text(path, entries, limit))

    return app


def _decode(content: str) -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except ValueError:
        raise InvalidInputError("content is not valid base64") from None


def _file_content(path: str, data: bytes, encoding: Encoding, limit: int) -> ContentBlock:
    """A file's bytes as MCP content: an image, text (cut to ``limit``), or base64 (refused past ``limit``)."""
    mime_type = IMAGE_SUFFIXES.get(PurePosixPath(path).suffix.lower())
    if encoding == "utf-8" and mime_type is not None:
        return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime_type)
    if encoding == "base64":
        encoded = base64.b64encode(data).decode()
        if len(encoded) > limit:
            raise InvalidInputError(f"{path} is {len(data)} bytes, {len(encoded)} characters as base64: more than "
                                    f"this MCP server's limit of {limit}; copy a part of it with run_command")
        return TextContent(type="text", text=encoded)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path} is not UTF-8 text ({len(data)} bytes): read it with encoding='base64'") \
            from None
    return TextContent(type="text", text=truncate(text, limit))


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
