"""A started sandbox handed to one user, and its background teardown.

A :class:`Lease` pairs a backend instance with the channel to its agent and
remembers how it was obtained (cold start or warm pool). Teardown happens off
the caller's path: :func:`discard` returns at once and a bounded number of
sandboxes are stopped concurrently in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.backends import registry
from corral.backends.base import Instance
from corral.channel import Channel
from corral.errors import InvalidInputError
from corral.models import SandboxSpec
from corral.sync_bridge import bridge

#: Teardown waits this long first, so the code waiting for the result runs first.
TEARDOWN_DELAY_S = 0.01
#: Sandboxes being torn down at once, per event loop.
MAX_CONCURRENT_TEARDOWNS = 8



@dataclass
class Lease:
    """One started sandbox: its instance, its channel, and how it was obtained."""

    instance: Instance
    channel: Channel
    isolation: str
    warm: bool
    #: time.monotonic() of the last successful health check.
    checked_at: float = 0.0
    #: Network services attached after hand-out (closed before teardown or recycling).
    services: Any = None

    @property
    def setup_ms(self) -> float:
        """Host-side preparation time; 0 for a warm-pool hit."""
        return 0.0 if self.warm else self.instance.setup_ms

    @property
    def boot_ms(self) -> float:
        """Launch to agent-ready time; 0 for a warm-pool hit."""
        return 0.0 if self.warm else self.instance.boot_ms


async def cold_start(spec: SandboxSpec) -> Lease:
    """Start a new sandbox for ``spec`` on the backend its isolation resolves to."""
    backend = registry.resolve(spec.isolation)
    instance = await backend.start(spec)
    return Lease(instance, Channel(instance), backend.name, warm=False)


async def resume_start(spec: SandboxSpec, directory: Path) -> Lease:
    """A sandbox continuing from the memory snapshot in ``directory`` (see :func:`pause_memory`)."""
    backend = registry.resolve(spec.isolation)
    instance = await backend.resume(directory, spec)
    return Lease(instance, Channel(instance), backend.name, warm=False)


async def pause_memory(lease: Lease, directory: Path) -> None:
    """Save ``lease``'s sandbox whole (memory included) into ``directory`` and stop it.

    InvalidInputError (nothing changed) where the isolation level cannot capture memory.
    """
    backend = registry.resolve(lease.isolation)
    if not backend.captures_memory:
        raise InvalidInputError(f"isolation={lease.isolation!r} cannot capture a sandbox's memory")
    await lease.channel.close()
    await backend.pause(lease.instance, directory)


class LeaseSource(Protocol):
    """Where a sandbox started on a pool takes its lease and hands it back (``AsyncPool`` is one)."""

    spec: SandboxSpec

    async def lease(self) -> Lease:
        """A ready sandbox's lease."""
        ...

    def retire(self, lease: Lease) -> None:
        """Take back a lease that will not serve again."""
        ...

class _Teardowns:
    """Background stops, bounded, awaitable as a group (one per event loop)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.slots = asyncio.Semaphore(MAX_CONCURRENT_TEARDOWNS)

    async def _stop(self, lease: Lease) -> None:
        stopped = False
        try:
            await asyncio.sleep(TEARDOWN_DELAY_S)
            async with self.slots:
                if lease.services is not None:
                    await lease.services.close()
                await lease.channel.close()
                await lease.instance.stop()
            stopped = True
        finally:
            if not stopped:
                # cancelled, or destroyed with its loop (asyncio.run returning, a test's loop
                # closing): nothing will run this coroutine again, so stop the sandbox now
                lease.instance.stop_now()


_teardowns: dict[asyncio.AbstractEventLoop, _Teardowns] = {}


def _current() -> _Teardowns:
    loop = asyncio.get_running_loop()
    if loop not in _teardowns:
        _teardowns[loop] = _Teardowns()
    return _teardowns[loop]


def discard(lease: Lease) -> None:
    """Stop ``lease``'s sandbox in the background; returns immediately.

    The stop starts a moment later, so that the caller's own continuation (the
    code waiting for the result that was just produced) runs first.
    """
    teardowns = _current()
    task = asyncio.ensure_future(teardowns._stop(lease))
    teardowns.tasks.add(task)
    task.add_done_callback(teardowns.tasks.discard)
    # a task cancelled before its first step (a shutdown that cancels every task in the same loop
    # iteration as the close) never enters _stop, so its ``finally`` cannot stop the sandbox: stop
    # it here (stop_now is idempotent)
    task.add_done_callback(lambda done: lease.instance.stop_now() if done.cancelled() else None)


async def wait_for_teardowns(timeout: float = 30.0) -> None:
    """Wait until every background teardown on this loop has finished."""
    teardowns = _current()
    end = time.monotonic() + timeout
    while teardowns.tasks and time.monotonic() < end:
        with contextlib.suppress(Exception):
            await asyncio.wait(set(teardowns.tasks), timeout=max(end - time.monotonic(), 0.001))


bridge.at_exit(wait_for_teardowns)  # the sync API's sandboxes are torn down before the program ends
