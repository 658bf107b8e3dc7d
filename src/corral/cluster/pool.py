"""``corral.cluster.AsyncPool``: corral's pool, spread over the sandbox hosts of a Ray cluster.

The same calls and results as :class:`corral.AsyncPool` (``run``, ``map``/``run_many``,
``sandbox``, ``statistics``, ``close``), each placed on the least loaded node with a free
slot; results are :class:`ClusterExecutionResult` / :class:`ClusterBatchResult` (the same
models plus ``node_id``). A run or item in flight on a node that dies is outcome-unknown:
``run`` raises :class:`NodeLostError` (a SandboxCrashedError), a batch gives the item
``sandbox_error``; with ``retry_safe=True`` the caller declares its code safe to run twice,
and it is started again on another node (at most :data:`MAX_ATTEMPTS` times in all).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ray

from corral.batch.execute import invalid
from corral.batch.items import parse_item
from corral.batch.runner import Items, check_concurrency, stream_results
from corral.cluster.nodes import HOST_RESOURCE, Hosts
from corral.cluster.results import ClusterBatchResult, ClusterExecutionResult, lost_item, placed_item
from corral.cluster.session import AsyncClusterSandbox
from corral.errors import InvalidInputError, NodeLostError, SandboxClosedError
from corral.models import Language
from corral.network import Network, PortMapping
from corral.sandbox import make_spec

#: Times a ``retry_safe`` run or item is started at most when its nodes keep dying.
MAX_ATTEMPTS = 3


class AsyncPool:
    """Warm sandboxes on every Ray node that can sandbox; ``async with`` starts and closes it.

    ``address``: the Ray cluster (``"auto"``, ``"ray://..."``, ``"host:port"``), connected with
    ``ray.init`` unless Ray is already initialized in this process. ``per_node``: sandboxes kept
    ready on each node, which is also the most runs placed on one node at once. ``start`` waits
    until the host of every node seen is ready or refused (at most ``start_timeout``) and raises
    SandboxStartError, with each node's refusal, if fewer than ``min_nodes`` are ready. The other arguments are :class:`corral.AsyncPool`'s, for every node's pool.
    """

    def __init__(self, address: str | None = "auto", *, per_node: int = 4, language: Language = "python",
                 isolation: str = "auto", env: dict[str, str] | None = None, min_nodes: int = 1,
                 start_timeout: float = 120.0, resource: str = HOST_RESOURCE, timeout: float | None = None,
                 memory_mb: int | None = None, pids: int | None = None, cpus: float | None = None,
                 disk_mb: int | None = None, stdout_limit: int | None = None, stderr_limit: int | None = None):
        if not isinstance(per_node, int) or isinstance(per_node, bool) or not 1 <= per_node <= 1024:
            raise InvalidInputError(f"per_node must be an integer in [1, 1024], got {per_node!r}")
        if not isinstance(min_nodes, int) or min_nodes < 0:
            raise InvalidInputError(f"min_nodes must be a non-negative integer, got {min_nodes!r}")
        given = {"timeout": timeout, "memory_mb": memory_mb, "pids": pids, "cpus": cpus, "disk_mb": disk_mb,
                 "stdout_limit": stdout_limit, "stderr_limit": stderr_limit}
        limits = {name: value for name, value in given.items() if value is not None}
        self.spec = make_spec(language, isolation, env, **limits)  # InvalidInputError here, before any node
        self.per_node = per_node
        self.min_nodes = min_nodes
        self.start_timeout = start_timeout
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.hosts = Hosts(per_node, (per_node, language, isolation, {"env": env, **limits}), resource=resource)
        self._closed = False

    async def start(self) -> AsyncPool:
        """Start a host on every node with the resource; return once each is ready or refused."""
        self._check_open()
        await self.hosts.start()
        await self.hosts.wait_for(self.min_nodes, self.start_timeout)
        return self

    async def __aenter__(self) -> AsyncPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def nodes(self) -> list[dict[str, Any]]:
        """Each ready host: ``node_id``, ``hostname``, ``isolation``, ``in_flight``, ``capacity``, ``sessions``."""
        return [{**host.facts, "in_flight": host.in_flight, "capacity": host.capacity, "sessions": host.sessions}
                for host in self.hosts.ready.values()]

    async def statistics(self) -> dict[str, Any]:
        """Nodes ready, lost and refused, and each ready host's pool statistics (by node id)."""
        per_node = {}
        for node_id, host in list(self.hosts.ready.items()):
            per_node[node_id] = await self.hosts.call(host, host.actor.statistics.remote(), "statistics")
        return {"nodes": len(self.hosts.ready), "lost": sorted(self.hosts.lost), "refused": dict(self.hosts.refused),
                "per_node": per_node}

    async def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
                  env: dict[str, str] | None = None, stdin: bytes | str | None = None,
                  retry_safe: bool = False) -> ClusterExecutionResult:
        """Run ``code`` once in a fresh process on the least loaded node (waits for a free slot).

        NodeLostError if the node dies while it runs, unless ``retry_safe``: then it is run again elsewhere.
        """
        self._check_open()
        options = {"language": language, "timeout": timeout, "env": env, "stdin": stdin}
        tried: set[str] = set()
        while True:
            async with self.hosts.slot(avoid=tried) as host:
                tried.add(host.node_id)
                try:
                    return await self.hosts.call(host, host.actor.run.remote(code, options), "a run")
                except NodeLostError:
                    if not retry_safe or len(tried) >= MAX_ATTEMPTS:
                        raise

    def run_many(self, items: Items, *, concurrency: int | None = None, ordered: bool = False,
                 retry_safe: bool = False) -> AsyncIterator[ClusterBatchResult]:
        """Batch items over the nodes, ``concurrency`` at a time (default: every host's ``per_node``, summed).

        Each item waits for a free slot on some node, so no node has more than ``per_node`` in
        flight. An item whose node dies is ``sandbox_error`` (SandboxCrashedError: outcome unknown),
        or, with ``retry_safe``, is started again on another node.
        """
        self._check_open()
        concurrency = check_concurrency(concurrency if concurrency is not None
                                        else max(1, min(256, self.per_node * max(len(self.hosts.ready), 1))))
        memory_mb = self.spec.limits.memory_mb

        async def run_one(index: int, raw: Any) -> ClusterBatchResult:
            try:
                item = parse_item(raw)
            except ValueError as exc:
                return placed_item(invalid(index, str(exc)), None)
            if item.memory_mb is not None and item.memory_mb != memory_mb:
                return placed_item(invalid(index, f"memory_mb={item.memory_mb}, but this pool's sandboxes have "
                                                  f"{memory_mb}"), None)
            tried: set[str] = set()
            while True:
                async with self.hosts.slot(avoid=tried) as host:
                    tried.add(host.node_id)
                    try:
                        return await self.hosts.call(host, host.actor.run_item.remote(item, index, len(tried)),
                                                     f"batch item {index}")
                    except NodeLostError as exc:
                        if not retry_safe or len(tried) >= MAX_ATTEMPTS:
                            return lost_item(index, str(exc), len(tried))

        return stream_results(items, run_one, concurrency, ordered)

    map = run_many

    def sandbox(self, *, node_id: str | None = None, network: Network | None = None,
                expose: list[PortMapping | int] | None = None, packages: list[str] | None = None,
                index_url: str | None = None) -> AsyncClusterSandbox:
        """A session sandbox on one node (``node_id``, or the least loaded when it starts); use ``async with``.

        The other arguments are ``corral.AsyncSandbox``'s for a pooled sandbox.
        """
        given = {"network": network, "expose": expose, "packages": packages, "index_url": index_url}
        options = {name: value for name, value in given.items() if value is not None}
        self._check_open()
        return AsyncClusterSandbox(self.hosts, options, node_id)

    async def close(self) -> None:
        """Close every host (its sessions and its pool) and stop looking for nodes."""
        self._closed = True
        await self.hosts.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError("the cluster pool is closed")

