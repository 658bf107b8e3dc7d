"""What a hosted sandbox needs from where it lives: the contract of the local and remote transports.

Both raise the corral errors of :mod:`corral.errors` with the same meaning, so
code written against one works against the other.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from typing import Any

from corral.client.terminal import AsyncHostedTerminal
from corral.contract.schemas import (
    CommandRequest,
    CreatedSandbox,
    CreateSandbox,
    LogEvent,
    ResumeSnapshot,
    RunRequest,
    SandboxInfo,
    SnapshotInfo,
    TemplateDefinition,
    TemplateInfo,
)
from corral.contract.states import SandboxState
from corral.models import (
    BackgroundCommand,
    ExecutionResult,
    FileEntry,
    FileInfo,
    OutputEvent,
    ProcessInfo,
)

#: Called with (step, total, message) while a template builds.
ProgressCallback = Callable[[int, int, str], Any]


class Transport(abc.ABC):
    """Calls on hosted sandboxes, by id."""

    @abc.abstractmethod
    async def create(self, request: CreateSandbox) -> CreatedSandbox:
        """Start a sandbox; Running when it returns."""

    @abc.abstractmethod
    async def get(self, sandbox_id: str) -> SandboxInfo:
        """A sandbox's record (NotFoundError if unknown)."""

    @abc.abstractmethod
    async def list(self, metadata: dict[str, str], state: SandboxState | None) -> list[SandboxInfo]:
        """Sandboxes whose metadata matches, newest first."""

    @abc.abstractmethod
    async def kill(self, sandbox_id: str) -> SandboxInfo:
        """Stop a sandbox (idempotent)."""

    @abc.abstractmethod
    async def set_timeout(self, sandbox_id: str, seconds: float) -> SandboxInfo:
        """The sandbox now expires ``seconds`` from now."""

    @abc.abstractmethod
    async def events(self, sandbox_id: str) -> list[LogEvent]:
        """The sandbox's lifecycle events, oldest first."""

    @abc.abstractmethod
    def stream(self, sandbox_id: str, request: RunRequest | CommandRequest) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """Run code or a command; yield output events, then the result."""

    @abc.abstractmethod
    async def execute(self, sandbox_id: str, request: RunRequest | CommandRequest) -> ExecutionResult | BackgroundCommand:
        """Run code or a command; the result (or the started background command)."""

    @abc.abstractmethod
    async def write_file(self, sandbox_id: str, path: str, data: bytes, mode: int) -> int:
        """Create or replace a file; the bytes written."""

    @abc.abstractmethod
    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        """A whole file."""

    @abc.abstractmethod
    async def list_files(self, sandbox_id: str, path: str) -> list[FileEntry]:
        """Entries of a directory."""

    @abc.abstractmethod
    async def remove_file(self, sandbox_id: str, path: str, recursive: bool) -> None:
        """Remove a file or directory."""

    @abc.abstractmethod
    async def stat_file(self, sandbox_id: str, path: str) -> FileInfo:
        """What a path is (FileOperationError ``not_found`` if nothing is there)."""

    @abc.abstractmethod
    async def make_dir(self, sandbox_id: str, path: str, parents: bool) -> FileInfo:
        """Create a directory."""

    @abc.abstractmethod
    async def rename_file(self, sandbox_id: str, source: str, destination: str) -> FileInfo:
        """Move a file or directory."""

    @abc.abstractmethod
    async def list_processes(self, sandbox_id: str) -> list[ProcessInfo]:
        """The background commands still running."""

    @abc.abstractmethod
    async def signal_process(self, sandbox_id: str, pid: int, signal: str) -> bool:
        """Signal a background command; False if it had ended."""

    @abc.abstractmethod
    async def send_stdin(self, sandbox_id: str, pid: int, data: bytes) -> None:
        """Write to a background command's stdin."""

    @abc.abstractmethod
    async def close_stdin(self, sandbox_id: str, pid: int) -> None:
        """Close a background command's stdin."""

    @abc.abstractmethod
    async def pause(self, sandbox_id: str) -> SnapshotInfo:
        """Capture the sandbox into a snapshot and stop it."""

    @abc.abstractmethod
    async def resume(self, snapshot_id: str, request: ResumeSnapshot) -> CreatedSandbox:
        """A new sandbox continuing the snapshot."""

    @abc.abstractmethod
    async def build_template(self, definition: TemplateDefinition, on_progress: ProgressCallback) -> TemplateInfo:
        """Build a template (or find it built); progress as it goes."""

    @abc.abstractmethod
    async def open_terminal(self, sandbox_id: str, cols: int, rows: int, command: str | None) -> AsyncHostedTerminal:
        """Open an interactive terminal (``command`` None: an interactive bash)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the transport's own resources (connections); sandboxes are untouched."""
