"""Local mode: the server's own service, in this process, with no HTTP and no credentials.

One service per event loop and state directory (``$CORRAL_LOCAL_DIR``, else
``<corral data dir>/local``), so snapshots outlive the process and can be
resumed by a later one; sandboxes a dead process left running are marked
stopped when the next one starts.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from corral.client.terminal import AsyncHostedTerminal, LocalTerminal
from corral.client.transport import ProgressCallback, Transport
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
from corral.hosted import streaming
from corral.hosted.database import default_state_dir
from corral.hosted.file_transfer import read_whole, write_whole
from corral.hosted.service import SandboxService, ServiceConfig
from corral.hosted.snapshots import SnapshotService
from corral.hosted.template_build import build_template
from corral.hosted.terminal import Terminal
from corral.models import (
    BackgroundCommand,
    ExecutionResult,
    FileEntry,
    FileInfo,
    OutputEvent,
    ProcessInfo,
)

#: The owner recorded for sandboxes of local mode.
LOCAL_OWNER = "local"

_services: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, tuple[SandboxService, SnapshotService]]] = (
    weakref.WeakKeyDictionary()
)


def local_state_dir() -> Path:
    """Where local mode keeps its database and snapshots."""
    configured = os.environ.get("CORRAL_LOCAL_DIR")
    return Path(configured) if configured else default_state_dir("local")


async def _service() -> tuple[SandboxService, SnapshotService]:
    per_loop = _services.setdefault(asyncio.get_running_loop(), {})
    directory = local_state_dir()
    if directory not in per_loop:
        service = SandboxService(ServiceConfig(directory))
        per_loop[directory] = (service, SnapshotService(service))
        await service.start()
    return per_loop[directory]


class LocalTransport(Transport):
    """Hosted-sandbox calls answered by the in-process service."""

    async def create(self, request: CreateSandbox) -> CreatedSandbox:
        service, _ = await _service()
        created, _ = await service.create(LOCAL_OWNER, request)
        return created

    async def get(self, sandbox_id: str) -> SandboxInfo:
        return (await _service())[0].get(sandbox_id, LOCAL_OWNER)

    async def list(self, metadata: dict[str, str], state: SandboxState | None) -> list[SandboxInfo]:
        return (await _service())[0].list(LOCAL_OWNER, metadata=metadata, state=state)

    async def kill(self, sandbox_id: str) -> SandboxInfo:
        return await (await _service())[0].kill(sandbox_id, LOCAL_OWNER)

    async def set_timeout(self, sandbox_id: str, seconds: float) -> SandboxInfo:
        return (await _service())[0].set_timeout(sandbox_id, LOCAL_OWNER, seconds)

    async def events(self, sandbox_id: str) -> list[LogEvent]:
        service, _ = await _service()
        service.get(sandbox_id, LOCAL_OWNER)
        return service.records.events(sandbox_id)

    async def stream(self, sandbox_id: str,
                     request: RunRequest | CommandRequest) -> AsyncIterator[OutputEvent | ExecutionResult]:
        service, _ = await _service()
        async with service.use(sandbox_id, LOCAL_OWNER) as sandbox:
            events = streaming.stream(sandbox, request)
            try:
                async for item in events:
                    yield item
            finally:
                await events.aclose()

    async def execute(self, sandbox_id: str, request: RunRequest | CommandRequest) -> ExecutionResult | BackgroundCommand:
        service, _ = await _service()
        async with service.use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await streaming.execute(sandbox, request)

    async def write_file(self, sandbox_id: str, path: str, data: bytes, mode: int) -> int:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await write_whole(sandbox, path, data, mode)

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await read_whole(sandbox, path)

    async def list_files(self, sandbox_id: str, path: str) -> list[FileEntry]:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await sandbox.files.list(path)

    async def remove_file(self, sandbox_id: str, path: str, recursive: bool) -> None:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            await sandbox.files.remove(path, recursive=recursive)

    async def stat_file(self, sandbox_id: str, path: str) -> FileInfo:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await sandbox.files.stat(path)

    async def make_dir(self, sandbox_id: str, path: str, parents: bool) -> FileInfo:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await sandbox.files.make_dir(path, parents=parents)

    async def rename_file(self, sandbox_id: str, source: str, destination: str) -> FileInfo:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await sandbox.files.rename(source, destination)

    async def list_processes(self, sandbox_id: str) -> list[ProcessInfo]:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await sandbox.commands.list()

    async def signal_process(self, sandbox_id: str, pid: int, signal: str) -> bool:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            return await sandbox.commands.kill(pid, signal)

    async def send_stdin(self, sandbox_id: str, pid: int, data: bytes) -> None:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            await sandbox.commands.send_stdin(pid, data)

    async def close_stdin(self, sandbox_id: str, pid: int) -> None:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            await sandbox.commands.close_stdin(pid)

    async def pause(self, sandbox_id: str) -> SnapshotInfo:
        return await (await _service())[1].pause(sandbox_id, LOCAL_OWNER)

    async def resume(self, snapshot_id: str, request: ResumeSnapshot) -> CreatedSandbox:
        return await (await _service())[1].resume(snapshot_id, LOCAL_OWNER, request)

    async def build_template(self, definition: TemplateDefinition, on_progress: ProgressCallback) -> TemplateInfo:
        service, _ = await _service()
        release = service.reserve(LOCAL_OWNER)
        try:
            return await build_template(service.templates, service.blobs, LOCAL_OWNER, definition, on_progress,
                                        isolation=service.config.isolation)
        finally:
            release()

    async def open_terminal(self, sandbox_id: str, cols: int, rows: int, command: str | None) -> AsyncHostedTerminal:
        async with (await _service())[0].use(sandbox_id, LOCAL_OWNER) as sandbox:
            terminal = Terminal(sandbox)
        return await LocalTerminal(terminal, cols, rows, command).open()

    async def close(self) -> None:
        """Nothing to release: the service is shared by every local sandbox of this loop."""
