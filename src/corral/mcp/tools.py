"""The MCP tools: one method per tool, each one call of corral's hosted-sandbox API.

A tool's docstring is its description for the model, its parameters' ``Field``
descriptions document the arguments. A corral error becomes an MCP tool error
with corral's message; a run stopped by a limit (timeout, memory) is a tool
error too, with its output. Tools are plain methods: the SDK runs them on
worker threads, and they use corral's synchronous API.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from corral.errors import CorralError, InvalidInputError
from corral.mcp.content import Encoding, background_text, execution_content, failed, file_content, listing_text
from corral.mcp.sandboxes import Sandboxes
from corral.models import BackgroundCommand

SandboxId = Annotated[str, Field(description="The id create_sandbox returned.")]
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ACTS = ToolAnnotations(open_world_hint=False)
#: Hints for clients about each tool (none reaches beyond its sandbox).
ANNOTATIONS = {
    "create_sandbox": _ACTS,
    "list_sandboxes": _READ_ONLY,
    "kill_sandbox": ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    "run_code": _ACTS,
    "run_command": _ACTS,
    "write_file": ToolAnnotations(idempotent_hint=True, open_world_hint=False),
    "read_file": _READ_ONLY,
    "list_files": _READ_ONLY,
}


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn corral's errors into MCP tool errors that carry corral's message."""
    try:
        yield
    except CorralError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from exc


def _text(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)])


class SandboxTools:
    """The tools, acting on the sandboxes of one MCP server."""

    def __init__(self, sandboxes: Sandboxes):
        self._sandboxes = sandboxes
        self._limit = sandboxes.config.max_output_chars

    def all(self) -> dict[str, Callable[..., CallToolResult]]:
        """Every tool by name, in the order a client lists them."""
        return {name: getattr(self, name) for name in ANNOTATIONS}

    def create_sandbox(
        self,
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
            sandbox = self._sandboxes.create(template, env=env, memory_mb=memory_mb, run_timeout=run_timeout)
        info = sandbox.info
        expires = f"; it expires in {info.expires_at - time.time():.0f} s" if info.expires_at else ""
        return CallToolResult(
            content=[TextContent(type="text", text=f"sandbox_id: {sandbox.id}\nlanguage: {info.language}{expires}")],
            structured_content={"sandbox_id": sandbox.id, "language": info.language, "expires_at": info.expires_at},
        )

    def list_sandboxes(self) -> CallToolResult:
        """The ids of the sandboxes this MCP server created and has not killed."""
        ids = self._sandboxes.ids()
        return _text("\n".join(ids) if ids else "no sandbox: create one with create_sandbox")

    def kill_sandbox(self, sandbox_id: SandboxId) -> CallToolResult:
        """Stop a sandbox; its files and processes are gone."""
        with _tool_errors():
            self._sandboxes.kill(sandbox_id)
        return _text(f"killed {sandbox_id}")

    def run_code(
        self,
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
            result = self._sandboxes.get(sandbox_id).run(code, language=language, timeout=timeout)
        return CallToolResult(content=execution_content(result, self._limit, timeout), is_error=failed(result))

    def run_command(
        self,
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
            sandbox = self._sandboxes.get(sandbox_id)
            outcome = sandbox.commands.run(command, cwd=cwd, env=env, background=background, **options)
        if isinstance(outcome, BackgroundCommand):
            return _text(background_text(outcome))
        return CallToolResult(content=execution_content(outcome, self._limit, timeout), is_error=failed(outcome))

    def write_file(
        self,
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Relative to /home/user, or absolute under /home/user, /tmp.")],
        content: Annotated[str, Field(description="The file's contents (text, or base64 with encoding=base64).")],
        encoding: Annotated[Encoding, Field(description="How content is given.")] = "utf-8",
    ) -> CallToolResult:
        """Create or replace a file in the sandbox (parent directories are created)."""
        with _tool_errors():
            data = _decode(content) if encoding == "base64" else content.encode()
            size = self._sandboxes.get(sandbox_id).files.write(path, data)
        return _text(f"wrote {size} bytes to {path}")

    def read_file(
        self,
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Relative to /home/user, or absolute.")],
        encoding: Annotated[Encoding, Field(description="utf-8: as text (PNG, JPEG, GIF and WebP files come back "
                                                        "as images); base64: the raw bytes.")] = "utf-8",
    ) -> CallToolResult:
        """Read a file from the sandbox."""
        with _tool_errors():
            data = self._sandboxes.get(sandbox_id).files.read(path)
            return CallToolResult(content=[file_content(path, data, encoding, self._limit)])

    def list_files(
        self,
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="A directory (default: /home/user).")] = ".",
    ) -> CallToolResult:
        """List a directory in the sandbox: kind, size, mode and name of each entry."""
        with _tool_errors():
            entries = self._sandboxes.get(sandbox_id).files.list(path)
        return _text(listing_text(path, entries, self._limit))


def _decode(content: str) -> bytes:
    """The bytes of base64 ``content`` (InvalidInputError if it is not base64)."""
    try:
        return base64.b64decode(content, validate=True)
    except ValueError:
        raise InvalidInputError("content is not valid base64") from None
