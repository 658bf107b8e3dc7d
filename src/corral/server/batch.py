"""Batches on the server: shared pools, and how much of them one API key may use at once.

Every key may run :attr:`BatchConfig.runs_per_key` items at once across all its requests
(``POST /v1/batch`` and SandboxFusion's ``/run_code``), and have
:attr:`BatchConfig.batches_per_key` batch requests and :attr:`BatchConfig.waiting_per_key`
single runs waiting for a slot; past that a request is refused at once with
:class:`Overloaded` (a 429 with ``Retry-After``), never queued without bound. The pools
(per language and ``memory_mb``, see :mod:`corral.batch.many`) are shared by every key and
closed with the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from corral.batch.execute import invalid, run_item
from corral.batch.items import BatchItem, parse_item
from corral.batch.many import PoolSet
from corral.batch.runner import stream_results
from corral.batch.verdicts import BatchResult
from corral.errors import InvalidInputError, LimitExceededError

#: Seconds a refused client is told to wait (``Retry-After``).
RETRY_AFTER_S = 1


class Overloaded(LimitExceededError):
    """This key already uses its share of the batch runners; retry after ``retry_after`` seconds."""

    def __init__(self, message: str):
        super().__init__(message)
        self.retry_after = RETRY_AFTER_S


@dataclass(frozen=True)
class BatchConfig:
    """How the server runs batches."""

    isolation: str = "auto"
    #: Items one key runs at once, over all its requests.
    runs_per_key: int = 8
    #: Batch requests one key may have open at once.
    batches_per_key: int = 4
    #: Single runs (``/run_code``) of one key that may wait for a slot.
    waiting_per_key: int = 64
    #: Sandboxes each shared pool keeps started.
    pool_size: int = 2
    #: Largest memory_mb an item may ask for (the same bound as a hosted sandbox's limits).
    max_memory_mb: int = 64 * 1024


@dataclass
class _KeyUse:
    slots: asyncio.Semaphore
    batches: int = 0
    waiting: int = 0
    users: int = 0


class BatchService:
    """Run batch items for API keys on shared pools, within each key's share."""

    def __init__(self, config: BatchConfig):
        self.config = config
        self.pools = PoolSet(config.pool_size, isolation=config.isolation, config={})
        self._keys: dict[str, _KeyUse] = {}

    def _use(self, owner: str) -> _KeyUse:
        use = self._keys.get(owner)
        if use is None:
            use = self._keys[owner] = _KeyUse(asyncio.Semaphore(self.config.runs_per_key))
        return use

    def _forget_if_idle(self, owner: str) -> None:
        use = self._keys.get(owner)
        if use is not None and not (use.batches or use.waiting or use.users):
            del self._keys[owner]

    @contextlib.asynccontextmanager
    async def _slot(self, owner: str) -> AsyncIterator[None]:
        use = self._use(owner)
        use.users += 1
        try:
            async with use.slots:
                yield
        finally:
            use.users -= 1
            self._forget_if_idle(owner)

    def _problem(self, item: BatchItem) -> str | None:
        if item.memory_mb is not None and item.memory_mb > self.config.max_memory_mb:
            return f"memory_mb: at most {self.config.max_memory_mb} on this server"
        return None

    async def _run(self, owner: str, index: int, raw: Any) -> BatchResult:
        try:
            item = parse_item(raw)
        except ValueError as exc:
            return invalid(index, str(exc))
        if problem := self._problem(item):
            return invalid(index, problem)
        async with self._slot(owner):
            try:
                async with self.pools.pool_for(item) as pool:
                    return await run_item(pool, item, index)
            except InvalidInputError as exc:
                return invalid(index, str(exc))

    def open_batch(self, owner: str, items: Iterable[Any], *, concurrency: int,
                   ordered: bool) -> AsyncIterator[BatchResult]:
        """Admit a batch of ``owner`` (Overloaded if it has too many open) and return its result stream."""
        use = self._use(owner)
        if use.batches >= self.config.batches_per_key:
            raise Overloaded(f"this key has {use.batches} batches running (the limit): retry when one ends")
        use.batches += 1
        return self._batch(owner, items, min(concurrency, self.config.runs_per_key), ordered)

    async def _batch(self, owner: str, items: Iterable[Any], concurrency: int,
                     ordered: bool) -> AsyncIterator[BatchResult]:
        results = stream_results(items, lambda index, raw: self._run(owner, index, raw), concurrency, ordered)
        try:
            async for result in results:
                yield result
        finally:
            await results.aclose()
            self._keys[owner].batches -= 1
            self._forget_if_idle(owner)

    async def run_one(self, owner: str, item: BatchItem) -> BatchResult:
        """One item for ``owner``, waiting for a slot (Overloaded if too many already wait)."""
        if problem := self._problem(item):
            return invalid(0, problem)
        use = self._use(owner)
        if use.slots.locked() and use.waiting >= self.config.waiting_per_key:
            raise Overloaded(f"this key has {self.config.runs_per_key} runs going and {use.waiting} waiting "
                             "(the limit): retry shortly")
        use.waiting += 1
        waiting = True
        try:
            async with self._slot(owner):
                use.waiting -= 1
                waiting = False
                try:
                    async with self.pools.pool_for(item) as pool:
                        return await run_item(pool, item, 0)
                except InvalidInputError as exc:
                    return invalid(0, str(exc))
        finally:
            if waiting:
                use.waiting -= 1
            self._forget_if_idle(owner)

    async def close(self) -> None:
        """Close the shared pools."""
        await self.pools.close()
