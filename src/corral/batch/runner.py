"""Running many items: bounded concurrency, results streamed as they complete.

The input is consumed lazily: at most ``concurrency`` items run at once, and with
``ordered=True`` at most ``2 * concurrency`` results wait for an earlier one, so neither
the input nor the results are ever queued without bound. Each result carries its item's
index. :func:`pool_map` is ``AsyncPool.map``; :mod:`corral.batch.many` has ``arun_many``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from corral.batch.execute import ItemPool, invalid, run_item
from corral.batch.items import BatchItem, parse_item
from corral.batch.verdicts import BatchResult
from corral.errors import InvalidInputError


#: Largest concurrency of one batch.
MAX_CONCURRENCY = 256

Items = Iterable[BatchItem | dict] | AsyncIterable[BatchItem | dict]
RunOne = Callable[[int, Any], Awaitable[BatchResult]]


def check_concurrency(concurrency: object) -> int:
    """A valid concurrency (InvalidInputError otherwise)."""
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidInputError(f"concurrency must be an integer in [1, {MAX_CONCURRENCY}], got {concurrency!r}")
    return concurrency


async def stream_results(items: Items, run_one: RunOne, concurrency: int, ordered: bool) -> AsyncIterator[BatchResult]:
    """Run ``run_one(index, raw item)`` over ``items``, ``concurrency`` at a time; yield results as they complete."""
    source = _aiter(items)
    running: set[asyncio.Task[BatchResult]] = set()
    waiting: dict[int, BatchResult] = {}
    started = emitted = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < concurrency and (not ordered or started - emitted < 2 * concurrency):
                try:
                    raw = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                running.add(asyncio.ensure_future(run_one(started, raw)))
                started += 1
            if not running:
                break
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda task: task.result().index):
                if not ordered:
                    yield task.result()
                    emitted += 1
                else:
                    waiting[task.result().index] = task.result()
            while emitted in waiting:
                yield waiting.pop(emitted)
                emitted += 1
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if hasattr(source, "aclose"):
            await source.aclose()


async def _aiter(items: Items) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def pool_map(pool: ItemPool, items: Items, *, concurrency: int | None = None,
             ordered: bool = False) -> AsyncIterator[BatchResult]:
    """``AsyncPool.map``: every item on ``pool`` (an item's ``memory_mb`` must be the pool's)."""
    concurrency = check_concurrency(concurrency if concurrency is not None else max(pool.size, 1))
    memory_mb = pool.spec.limits.memory_mb

    async def run_one(index: int, raw: Any) -> BatchResult:
        try:
            item = parse_item(raw)
        except ValueError as exc:
            return invalid(index, str(exc))
        if item.memory_mb is not None and item.memory_mb != memory_mb:
            return invalid(index, f"memory_mb={item.memory_mb}, but this pool's sandboxes have {memory_mb} "
                                  "(use corral.run_many, which keeps a pool per memory_mb)")
        return await run_item(pool, item, index)

    return stream_results(items, run_one, concurrency, ordered)
