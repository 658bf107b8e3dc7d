"""The sandbox hosts of one cluster pool: found, started, chosen by free capacity, and lost.

Every :data:`POLL_INTERVAL_S` the pool looks at the cluster's alive nodes; each one that
advertises :data:`HOST_RESOURCE` and has no host yet gets a :class:`SandboxHost` actor,
pinned to it (hard node affinity) and holding :data:`HOST_RESOURCE_SHARE` of the resource,
so several pools can share a node. A host serves at most ``capacity`` runs at once;
:meth:`Hosts.slot` waits for the least loaded host with a free one (backpressure, never an
unbounded queue). A host whose node leaves the alive set, or whose actor dies under a call,
is lost: the calls in flight on it end with :class:`corral.errors.SandboxCrashedError`
naming the node, and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from corral.cluster.host import SandboxHost
from corral.errors import CorralError, NodeLostError, SandboxStartError

log = logging.getLogger("corral.cluster")

#: The custom resource a node advertises (``ray start --resources='{"corral_host": 1}'``) when it can sandbox.
HOST_RESOURCE = "corral_host"
#: How much of it one pool's host takes: up to 100 pools can have a host on one node.
HOST_RESOURCE_SHARE = 0.01
#: Seconds between two looks at the cluster's nodes (for nodes that joined or died).
POLL_INTERVAL_S = 1.0
#: How long a new host may take to check its node and fill its pool.
HOST_START_TIMEOUT_S = 120.0

@dataclass
class Host:
    """One node's sandbox host, as this pool sees it."""

    node_id: str
    actor: Any
    capacity: int
    facts: dict[str, Any] = field(default_factory=dict)
    in_flight: int = 0
    sessions: int = 0
    lost: str | None = None  # why, once lost

    def load(self) -> int:
        """Runs in flight plus open sessions (what placement balances)."""
        return self.in_flight + self.sessions


def node_lost(host: Host, what: str) -> NodeLostError:
    """The error of a call on ``host`` once its node is lost."""
    return NodeLostError(f"{what}: node {host.node_id} was lost ({host.lost}); the outcome is unknown", host.node_id)


class Hosts:
    """The hosts of a pool, one per node that advertises HOST_RESOURCE."""

    def __init__(self, capacity: int, host_args: tuple, *, resource: str = HOST_RESOURCE):
        self.capacity = capacity
        self.resource = resource
        self._host_args = host_args
        self.ready: dict[str, Host] = {}
        self.lost: dict[str, Host] = {}
        self.refused: dict[str, str] = {}
        self._starting: dict[str, asyncio.Task] = {}
        self._changed = asyncio.Condition()
        self._watcher: asyncio.Task | None = None
        self._closed = False

    async def start(self) -> None:
        """Look at the nodes now, then every POLL_INTERVAL_S in the background."""
        await self.discover()
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until every host being started is ready or refused, and ``count`` are ready.

        SandboxStartError (naming every refusal) if fewer than ``count`` are ready once none is
        on its way, or after ``timeout`` (then hosts still starting join later).
        """
        deadline = time.monotonic() + timeout
        async with self._changed:
            while self._starting or len(self.ready) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._starting:
                    if len(self.ready) >= count:
                        return
                    raise SandboxStartError(self._shortfall(count))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, POLL_INTERVAL_S))

    def _shortfall(self, count: int) -> str:
        refused = "; ".join(f"node {node}: {why}" for node, why in self.refused.items()) or "none refused"
        return (f"{len(self.ready)} of {count} sandbox hosts are ready (nodes advertising {self.resource!r} "
                f"that can sandbox); {refused}")

    async def discover(self) -> None:
        """Start a host on every new node with the resource; lose the hosts of nodes that died."""
        nodes = await asyncio.to_thread(ray.nodes)
        alive = {node["NodeID"] for node in nodes if node["Alive"] and node["Resources"].get(self.resource, 0) > 0}
        for node_id in alive:
            if node_id not in self.ready and node_id not in self._starting and node_id not in self.refused:
                self._starting[node_id] = asyncio.ensure_future(self._start_host(node_id))
        for node_id, host in list(self.ready.items()):
            if node_id not in alive:
                await self.lose(host, "the node left the cluster's alive nodes")

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                await self.discover()
            except Exception:  # the watcher must outlive one failed look (the GCS restarting...)
                log.exception("looking at the cluster's nodes failed")

    async def _start_host(self, node_id: str) -> None:
        actor = ray.remote(SandboxHost).options(
            num_cpus=0, resources={self.resource: HOST_RESOURCE_SHARE}, max_restarts=0, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(*self._host_args)
        try:
            facts = await asyncio.wait_for(_awaitable(actor.ready.remote()), HOST_START_TIMEOUT_S)
        except (RayError, CorralError, asyncio.TimeoutError) as exc:
            reason = str(_cause(exc)).strip().splitlines()[-1] if str(_cause(exc)).strip() else type(exc).__name__
            log.warning("node %s cannot host sandboxes: %s", node_id, reason)
            self.refused[node_id] = reason
            ray.kill(actor)
        else:
            if self._closed:
                ray.kill(actor)
            else:
                self.ready[node_id] = Host(node_id, actor, self.capacity, facts)
                log.info("sandbox host ready on node %s (%s)", node_id, facts.get("hostname"))
        finally:
            self._starting.pop(node_id, None)
            async with self._changed:
                self._changed.notify_all()

    async def lose(self, host: Host, why: str) -> None:
        """Mark ``host`` lost (its node or actor died) and stop placing work on it."""
        if host.lost is None:
            host.lost = why
            log.warning("sandbox host on node %s lost: %s", host.node_id, why)
        if self.ready.get(host.node_id) is host:
            del self.ready[host.node_id]
            self.lost[host.node_id] = host
            ray.kill(host.actor)
        async with self._changed:
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def slot(self, avoid: set[str] = frozenset()) -> AsyncIterator[Host]:
        """The least loaded host with a free run slot (waits for one), held for the block."""
        async with self._changed:
            while True:
                if self._closed:
                    raise SandboxStartError("the cluster pool is closed")
                free = [host for host in self.ready.values() if host.in_flight < host.capacity]
                preferred = [host for host in free if host.node_id not in avoid] or free
                if preferred:
                    host = min(preferred, key=Host.load)
                    break
                if not self.ready and not self._starting:
                    raise SandboxStartError(self._shortfall(1))
                await self._changed.wait()
            host.in_flight += 1
        try:
            yield host
        finally:
            async with self._changed:
                host.in_flight -= 1
                self._changed.notify_all()

    def for_session(self, node_id: str | None) -> Host:
        """The host of ``node_id``, or the least loaded one (for a new session); SandboxStartError if none."""
        if node_id is not None:
            if node_id not in self.ready:
                why = self.lost[node_id].lost if node_id in self.lost else self.refused.get(node_id, "no such node")
                raise SandboxStartError(f"node {node_id} has no ready sandbox host ({why})")
            return self.ready[node_id]
        if not self.ready:
            raise SandboxStartError(self._shortfall(1))
        return min(self.ready.values(), key=Host.load)

    async def call(self, host: Host, call: ray.ObjectRef, what: str) -> Any:
        """Await an actor call on ``host``; its node dying gives NodeLostError, its CorralErrors come back as they are."""
        if host.lost is not None:
            raise node_lost(host, what)
        try:
            return await call
        except asyncio.CancelledError:  # the caller gave up (a batch closed early): stop the run on the node too
            with contextlib.suppress(Exception):
                ray.cancel(call)
            raise
        except RayTaskError as exc:
            cause = _cause(exc)
            if isinstance(cause, CorralError):
                raise cause from None
            raise
        except RayActorError as exc:
            await self.lose(host, f"its actor died: {type(exc).__name__}")
            raise node_lost(host, what) from None

    async def stream(self, host: Host, generator: Any, what: str) -> AsyncIterator[Any]:
        """The items of a streaming actor call on ``host`` as they come (errors as in :meth:`call`)."""
        if host.lost is not None:
            raise node_lost(host, what)
        try:
            async for ref in generator:
                yield await self.call(host, ref, what)
        except RayActorError as exc:
            await self.lose(host, f"its actor died: {type(exc).__name__}")
            raise node_lost(host, what) from None
        finally:
            with contextlib.suppress(Exception):
                ray.cancel(generator)  # a consumer that stopped early stops the block on the node

    async def close(self) -> None:
        """Stop looking for nodes and close every host."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in list(self._starting.values()):
            task.cancel()
        await asyncio.gather(*self._starting.values(), return_exceptions=True)
        hosts, self.ready = list(self.ready.values()), {}
        closing = [_awaitable(host.actor.close.remote()) for host in hosts]
        await asyncio.gather(*closing, return_exceptions=True)
        for host in hosts:
            ray.kill(host.actor)
        async with self._changed:
            self._changed.notify_all()


def _cause(exc: BaseException) -> BaseException:
    """The exception an actor method raised, without Ray's wrapper."""
    return getattr(exc, "cause", None) or exc


async def _awaitable(ref: Any) -> Any:
    """An ObjectRef as a coroutine (for asyncio.wait_for and gather)."""
    return await ref
