"""``corral.arun_many``: a batch on pools of its own, one per configuration its items ask for.

Items are grouped by language (the interpreter a pool keeps started ahead) and ``memory_mb``;
at most :data:`MAX_POOLS` pools exist at once (the least recently used idle one is closed to
make room), each with ``concurrency`` sandboxes. Every pool is closed when the batch ends or
its consumer stops iterating.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from corral.batch.execute import invalid, run_item
from corral.batch.items import BatchItem, parse_item
from corral.batch.runner import Items, check_concurrency, stream_results
from corral.batch.verdicts import BatchResult
from corral.errors import InvalidInputError
from corral.pool import AsyncPool
from corral.sandbox import make_spec

#: Pools one batch keeps at once (one per language and memory_mb).
MAX_POOLS = 4


class PoolSet:
    """Pools for the configurations a batch asks for; at most MAX_POOLS at once."""

    def __init__(self, size: int, *, isolation: str, config: dict[str, Any]):
        self.size = size
        self.isolation = isolation
        self.config = config
        self._pools: dict[tuple[str, int | None], AsyncPool] = {}
        self._users: dict[tuple[str, int | None], int] = {}
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def pool_for(self, item: BatchItem) -> AsyncIterator[AsyncPool]:
        """The pool for ``item``'s configuration, held for the block (so it is not closed under it)."""
        key = (_pool_language(item.language), item.memory_mb or self.config.get("memory_mb"))
        evicted: list[AsyncPool] = []
        async with self._changed:
            while key not in self._pools and len(self._pools) >= MAX_POOLS:
                idle = next((other for other in self._pools if not self._users[other]), None)
                if idle is None:
                    await self._changed.wait()
                    continue
                evicted.append(self._pools.pop(idle))  # closed below, without holding the others up
                del self._users[idle]
            if key not in self._pools:
                pool = AsyncPool(self.size, language=key[0], isolation=self.isolation,
                                 **{**self.config, "memory_mb": key[1]})
                await pool.start(wait=False)
                self._pools[key] = pool
                self._users[key] = 0
            else:  # most recently used last
                self._pools[key] = self._pools.pop(key)
            self._users[key] += 1
            pool = self._pools[key]
        for old in evicted:
            await old.close()
        try:
            yield pool
        finally:
            async with self._changed:
                self._users[key] -= 1
                self._changed.notify_all()

    async def close(self) -> None:
        """Close every pool."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


def _pool_language(language: str) -> str:
    """The language a pool is started for (its interpreter is kept started ahead of the runs)."""
    return language if language in ("python", "javascript") else "shell"


def arun_many(items: Items, *, concurrency: int = 4, ordered: bool = False, isolation: str = "auto",
              timeout: float | None = None, memory_mb: int | None = None, pids: int | None = None,
              cpus: float | None = None, disk_mb: int | None = None,
              env: dict[str, str] | None = None) -> AsyncIterator[BatchResult]:
    """Run every item, ``concurrency`` at a time; yield each BatchResult as it completes (``ordered``: in input order).

    ``timeout``, ``memory_mb``, ``pids``, ``cpus``, ``disk_mb`` and ``env`` are the defaults of every
    sandbox; an item's ``timeout`` and ``memory_mb`` override them. A bad configuration raises
    InvalidInputError here, before anything runs; a bad item is a result of its own.
    """
    concurrency = check_concurrency(concurrency)
    limits = {"timeout": timeout, "memory_mb": memory_mb, "pids": pids, "cpus": cpus, "disk_mb": disk_mb}
    make_spec("python", isolation, env, **limits)
    return _run_many(items, concurrency, ordered, PoolSet(concurrency, isolation=isolation, config={**limits, "env": env}))


async def _run_many(items: Items, concurrency: int, ordered: bool, pools: PoolSet) -> AsyncIterator[BatchResult]:
    async def run_one(index: int, raw: Any) -> BatchResult:
        try:
            item = parse_item(raw)
        except ValueError as exc:
            return invalid(index, str(exc))
        try:
            async with pools.pool_for(item) as pool:
                return await run_item(pool, item, index)
        except InvalidInputError as exc:  # the item's memory_mb does not fit the other limits
            return invalid(index, str(exc))

    results = stream_results(items, run_one, concurrency, ordered)
    try:
        async for result in results:
            yield result
    finally:
        await results.aclose()
        await pools.close()
