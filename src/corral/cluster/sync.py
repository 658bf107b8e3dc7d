"""The synchronous cluster API: ``Pool`` and ``Sandbox``, on corral's shared background loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from corral.batch.runner import Items
from corral.cluster.pool import AsyncPool
from corral.cluster.results import ClusterBatchResult, ClusterExecutionResult
from corral.cluster.session import AsyncClusterSandbox
from corral.models import BackgroundCommand, FileEntry, OutputEvent
from corral.sync_bridge import bridge


class Pool:
    """Warm sandboxes on every Ray node that can sandbox. See corral.cluster.AsyncPool."""

    def __init__(self, address: str | None = "auto", **config: Any):
        self._async = bridge.call(_construct(address, config))

    def start(self) -> Pool:
        """Start a host on every node with the resource; return once ``min_nodes`` are ready."""
        bridge.call(self._async.start())
        return self

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str, **options: Any) -> ClusterExecutionResult:
        """Run ``code`` once on the least loaded node (see AsyncPool.run)."""
        return bridge.call(self._async.run(code, **options))

    def run_many(self, items: Items, **options: Any) -> Iterator[ClusterBatchResult]:
        """Batch items over the nodes; results as they complete (see AsyncPool.run_many)."""
        return bridge.iterate(self._async.run_many(items, **options))

    map = run_many

    def sandbox(self, **options: Any) -> Sandbox:
        """A session sandbox pinned to one node (use it with ``with``)."""
        return Sandbox(self._async.sandbox(**options))

    def nodes(self) -> list[dict[str, Any]]:
        """Each ready host and its load."""
        return self._async.nodes()

    def statistics(self) -> dict[str, Any]:
        """Nodes ready, lost and refused, and each host's pool statistics."""
        return bridge.call(self._async.statistics())

    def close(self) -> None:
        """Close every host."""
        bridge.call(self._async.close())


async def _construct(address: str | None, config: dict[str, Any]) -> AsyncPool:
    return AsyncPool(address, **config)  # on the bridge's loop, so its asyncio objects belong there


class Sandbox:
    """A session sandbox on one node. See corral.cluster.AsyncClusterSandbox."""

    def __init__(self, sandbox: AsyncClusterSandbox):
        self._async = sandbox
        self.commands = _Commands(sandbox)
        self.files = _Files(sandbox)

    @property
    def node_id(self) -> str | None:
        """The Ray node the sandbox lives on."""
        return self._async.node_id

    def start(self) -> Sandbox:
        """Open the sandbox on the least loaded node."""
        bridge.call(self._async.start())
        return self

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str, **options: Any) -> ClusterExecutionResult:
        """A block in the session interpreter."""
        return bridge.call(self._async.run(code, **options))

    def stream(self, code: str, **options: Any) -> Iterator[OutputEvent | ClusterExecutionResult]:
        """The block streamed from its node: OutputEvents as they come, then the result."""
        return bridge.iterate(self._async.stream(code, **options))

    def close(self) -> None:
        """Close the sandbox."""
        bridge.call(self._async.close())


class _Commands:
    def __init__(self, sandbox: AsyncClusterSandbox):
        self._sandbox = sandbox

    def run(self, cmd: str, **options: Any) -> ClusterExecutionResult | BackgroundCommand:
        """``bash -c cmd`` in the sandbox."""
        return bridge.call(self._sandbox.commands.run(cmd, **options))


class _Files:
    def __init__(self, sandbox: AsyncClusterSandbox):
        self._files = sandbox.files

    def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> int:
        """Create or replace ``path``."""
        return bridge.call(self._files.write(path, data, mode=mode))

    def read(self, path: str) -> bytes:
        """A file's contents."""
        return bridge.call(self._files.read(path))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file decoded as text."""
        return bridge.call(self._files.read_text(path, encoding))

    def list(self, path: str = ".") -> list[FileEntry]:
        """Entries of a directory."""
        return bridge.call(self._files.list(path))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file or directory."""
        bridge.call(self._files.remove(path, recursive=recursive))
