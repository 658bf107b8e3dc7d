"""The synchronous cluster API: ``Pool`` and ``Sandbox``, on corral's shared background loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from corral.batch.runner import Items
from corral.cluster.nodes import HOST_RESOURCE
from corral.cluster.pool import AsyncPool
from corral.cluster.results import ClusterBatchResult, ClusterExecutionResult
from corral.cluster.session import AsyncClusterSandbox
from corral.models import BackgroundCommand, Language, OutputEvent
from corral.network import Network, PortMapping
from corral.sync_bridge import bridge
from corral.sync_files import BasicFiles


class Pool:
    """Warm sandboxes on every Ray node that can sandbox. See corral.cluster.AsyncPool."""

    def __init__(self, address: str | None = "auto", *, per_node: int = 4, language: Language = "python",
                 isolation: str = "auto", env: dict[str, str] | None = None, min_nodes: int = 1,
                 start_timeout: float = 120.0, resource: str = HOST_RESOURCE, timeout: float | None = None,
                 memory_mb: int | None = None, pids: int | None = None, cpus: float | None = None,
                 disk_mb: int | None = None, stdout_limit: int | None = None, stderr_limit: int | None = None):
        self._async = bridge.call(_construct(address, dict(
            per_node=per_node, language=language, isolation=isolation, env=env, min_nodes=min_nodes,
            start_timeout=start_timeout, resource=resource, timeout=timeout, memory_mb=memory_mb, pids=pids,
            cpus=cpus, disk_mb=disk_mb, stdout_limit=stdout_limit, stderr_limit=stderr_limit)))

    def start(self) -> Pool:
        """Start a host on every node with the resource; return once ``min_nodes`` are ready."""
        bridge.call(self._async.start())
        return self

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
            env: dict[str, str] | None = None, stdin: bytes | str | None = None,
            retry_safe: bool = False) -> ClusterExecutionResult:
        """Run ``code`` once on the least loaded node (see AsyncPool.run)."""
        return bridge.call(self._async.run(code, language=language, timeout=timeout, env=env, stdin=stdin,
                                           retry_safe=retry_safe))

    def run_many(self, items: Items, *, concurrency: int | None = None, ordered: bool = False,
                 retry_safe: bool = False) -> Iterator[ClusterBatchResult]:
        """Batch items over the nodes; results as they complete (see AsyncPool.run_many)."""
        return bridge.iterate(self._async.run_many(items, concurrency=concurrency, ordered=ordered,
                                                   retry_safe=retry_safe))

    map = run_many

    def sandbox(self, *, node_id: str | None = None, network: Network | None = None,
                expose: list[PortMapping | int] | None = None, packages: list[str] | None = None,
                index_url: str | None = None) -> Sandbox:
        """A session sandbox pinned to one node (use it with ``with``)."""
        return Sandbox(self._async.sandbox(node_id=node_id, network=network, expose=expose, packages=packages,
                                           index_url=index_url))

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
        self.files = BasicFiles(sandbox.files)

    @property
    def node_id(self) -> str | None:
        """The Ray node the sandbox lives on."""
        return self._async.node_id

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._async.closed

    def start(self) -> Sandbox:
        """Open the sandbox on the least loaded node."""
        bridge.call(self._async.start())
        return self

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
            env: dict[str, str] | None = None, cwd: str | None = None) -> ClusterExecutionResult:
        """A block in the session interpreter."""
        return bridge.call(self._async.run(code, language=language, timeout=timeout, env=env, cwd=cwd))

    def stream(self, code: str, *, language: Language | None = None, timeout: float | None = None,
               env: dict[str, str] | None = None,
               cwd: str | None = None) -> Iterator[OutputEvent | ClusterExecutionResult]:
        """The block streamed from its node: OutputEvents as they come, then the result."""
        return bridge.iterate(self._async.stream(code, language=language, timeout=timeout, env=env, cwd=cwd))

    def close(self) -> None:
        """Close the sandbox."""
        bridge.call(self._async.close())


class _Commands:
    def __init__(self, sandbox: AsyncClusterSandbox):
        self._sandbox = sandbox

    def run(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
            stdin: bytes | str | bool | None = None, timeout: float | None = None,
            background: bool = False) -> ClusterExecutionResult | BackgroundCommand:
        """``bash -c cmd`` in the sandbox."""
        return bridge.call(self._sandbox.commands.run(cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout,
                                                      background=background))
