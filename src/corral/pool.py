"""Warm pools: long-lived sandboxes, agent up, interpreter ready.

A pool keeps ``size`` ready sandboxes for one :class:`SandboxSpec` and refills
in the background. A one-shot run on a pool takes a ready sandbox, runs the
code *isolated*: in a process forked from the agent's pre-started interpreter
into namespaces of the run's own (fresh home, /tmp and /dev/shm mounts, its own
pid and IPC namespaces; see ``corral.agent.isolation``), so nothing of a run
survives it, and then puts the sandbox straight back: no sandbox start and no
reset per run. Each sandbox serves one run at a time (``size`` is the pool's
parallelism). A sandbox whose channel broke or whose process died is discarded
and replaced; one that idled a while must answer a ping before it is handed
out. When the pool is empty a run cold-starts, unless all its sandboxes are busy with runs:
then it first waits up to ``WAIT_FOR_RETURN_S`` for one to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

from corral.batch.runner import Items, pool_map
from corral.batch.verdicts import BatchResult
from corral.errors import CorralError, InvalidInputError, SandboxClosedError, TransientError
from corral.execution import RunOptions
from corral.lease import Lease, cold_start, discard, wait_for_teardowns
from corral.models import ExecutionResult, Language
from corral.protocol import Ack, PingRequest, wire
from corral.sandbox import AsyncSandbox, OutputCallback, make_spec

log = logging.getLogger(__name__)

#: How long a health check may take before the sandbox counts as broken.
HEALTH_CHECK_TIMEOUT_S = 2.0
#: Delay before refilling after a hand-out, so the start-up work does not
#: compete with the run that was just handed a sandbox.
REFILL_DELAY_S = 0.02
#: A ready sandbox checked this recently only gets the cheap liveness check
#: (its process runs, its channel is open); older ones must answer a ping.
RECHECK_AFTER_S = 1.0
#: How long a Pool.run waits for a busy sandbox to come back before it cold-starts one.
WAIT_FOR_RETURN_S = 0.05
#: Sandboxes started at once while refilling.
MAX_CONCURRENT_STARTS = 2


class AsyncPool:
    """Ready sandboxes for one configuration; ``async with`` fills and closes it."""

    def __init__(
        self,
        size: int = 4,
        *,
        language: Language = "python",
        isolation: str = "auto",
        env: dict[str, str] | None = None,
        recycle: bool = False,
        timeout: float | None = None,
        memory_mb: int | None = None,
        pids: int | None = None,
        cpus: float | None = None,
        disk_mb: int | None = None,
        stdout_limit: int | None = None,
        stderr_limit: int | None = None,
    ):
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 1024:
            raise InvalidInputError(f"pool size must be an integer in [0, 1024], got {size!r}")
        self.size = size
        #: Deprecated and ignored: every pool reuses its sandboxes, with per-run isolation.
        self.recycle = recycle
        self.spec = make_spec(language, isolation, env, timeout=timeout, memory_mb=memory_mb, pids=pids, cpus=cpus,
                              disk_mb=disk_mb, stdout_limit=stdout_limit, stderr_limit=stderr_limit)
        self._ready: asyncio.Queue[Lease] = asyncio.Queue()
        self._starting = 0
        #: Sandboxes busy with a Pool.run right now (they come back when it ends).
        self._serving = 0
        self._wake = asyncio.Event()
        self._filler: asyncio.Task | None = None
        self._closed = False
        #: Start sandboxes ahead of demand; False: a miss cold-starts one, which is then kept (a shared sandbox).
        self.refill = True
        self.hits = 0
        self.misses = 0
        self.recycled = 0

    async def start(self, *, wait: bool = True) -> AsyncPool:
        """Begin filling; with ``wait`` return once ``size`` sandboxes are ready."""
        if self._filler is None:
            self._filler = asyncio.ensure_future(self._fill_forever())
        self._wake.set()
        if wait:
            while self._ready.qsize() < self.size and not self._filler.done():
                await asyncio.sleep(0.01)
            if self._filler.done():
                self._filler.result()
        return self

    async def __aenter__(self) -> AsyncPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def statistics(self) -> dict[str, int]:
        """Ready sandboxes, starts in flight, hits and misses so far."""
        return {"ready": self._ready.qsize(), "starting": self._starting, "hits": self.hits, "misses": self.misses,
                "recycled": self.recycled}

    @property
    def serving(self) -> int:
        """Sandboxes busy with a :meth:`run` right now (they come back when it ends)."""
        return self._serving

    async def lease(self) -> Lease:
        """A ready, healthy sandbox (or a cold-started one if none is ready)."""
        if self._closed:
            raise SandboxClosedError("the pool is closed")
        if self._filler is None and self.refill:
            await self.start(wait=False)
        if (self._filler is not None and self._filler.done() and not self._filler.cancelled()
                and self._filler.exception() is not None):
            raise self._filler.exception()  # a permanent error (bad isolation level...) ended the filler
        while True:
            lease = self._ready.get_nowait() if not self._ready.empty() else await self._wait_for_return()
            if lease is None:
                self.misses += 1
                self._wake_soon()
                return await cold_start(self.spec)
            if await _healthy(lease):
                self.hits += 1
                lease.warm = True
                lease.instance.reset_accounting()  # the run's peak memory is its own, not an earlier run's
                return lease
            log.warning("discarding a pooled sandbox that failed its health check")
            discard(lease)

    async def _wait_for_return(self) -> Lease | None:
        """With more Pool.run callers than sandboxes (all busy serving runs), wait a moment for one to
        come back (a run takes milliseconds, a cold start tens of them); None if none did."""
        if self._serving <= self.size:
            return None
        deadline = time.monotonic() + WAIT_FOR_RETURN_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.001)
            if not self._ready.empty():
                return self._ready.get_nowait()
        return None

    def _wake_soon(self) -> None:
        """Refill after the current run had its turn: starting a sandbox blocks the loop for ~2 ms."""
        asyncio.get_running_loop().call_later(REFILL_DELAY_S, self._wake.set)

    def retire(self, lease: Lease) -> None:
        """Hand back a sandbox taken with :meth:`lease` that will not serve again (a session sandbox
        that closed): it is torn down in the background and the pool refills."""
        discard(lease)
        self._wake_soon()

    async def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
                  env: dict[str, str] | None = None, stdin: bytes | str | None = None,
                  files: dict[str, bytes | str] | None = None,
                  on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``code`` once, isolated, on a warm sandbox, which then goes back to the pool.

        The run gets namespaces of its own (fresh home, /tmp, /dev/shm, pid and IPC
        namespaces; see docs/threat-model.md), so nothing of one run is visible to
        the next on the same sandbox. ``files`` (relative path -> content) are
        written into the run's fresh home before the code starts.
        """
        options = AsyncSandbox(pool=self).run_options(code, language=language, timeout=timeout, env=env, stdin=stdin)
        options = dataclasses.replace(options, isolated=True, files=run_files(files))
        try:
            return await self._run_isolated(options, on_stdout, on_stderr)
        except TransientError:  # the sandbox could no longer isolate runs (nothing ran): once more, on another
            log.warning("discarded a pooled sandbox that refused an isolated run")
            return await self._run_isolated(options, on_stdout, on_stderr)

    async def _run_isolated(self, options: RunOptions, on_stdout: OutputCallback | None,
                            on_stderr: OutputCallback | None) -> ExecutionResult:
        sandbox = AsyncSandbox(pool=self)
        self._serving += 1
        try:
            await sandbox.start()
            try:
                result = await sandbox.execute(options, on_stdout=on_stdout, on_stderr=on_stderr)
            except BaseException:
                await sandbox.close()
                raise
        finally:
            self._serving -= 1
        self._give_back(sandbox.detach())
        return result

    def _give_back(self, lease: Lease) -> None:
        """Put a sandbox that served a run back among the ready ones, or discard it if it broke."""
        services, lease.services = lease.services, None
        in_use = services is not None and (services.proxy is not None or services.forwarder is not None)
        if (self._closed or lease.channel.broken or not lease.instance.alive() or in_use
                or self._ready.qsize() >= self.size):
            discard(lease)
            self._wake_soon()
            return
        lease.checked_at = time.monotonic()
        self.recycled += 1
        self._ready.put_nowait(lease)

    def stop_now(self) -> None:
        """Stop every ready sandbox without awaiting (the loop that would run close() is gone)."""
        self._closed = True
        while not self._ready.empty():
            with contextlib.suppress(Exception):  # the loop may be closed: the kill happens first regardless
                self._ready.get_nowait().instance.stop_now()

    def map(self, items: Items, *, concurrency: int | None = None, ordered: bool = False) -> AsyncIterator[BatchResult]:
        """Run batch items on this pool (``concurrency`` at a time, default ``size``); results as they complete."""
        return pool_map(self, items, concurrency=concurrency, ordered=ordered)

    def sandbox(self) -> AsyncSandbox:
        """A session sandbox taken from this pool (start it with ``async with``)."""
        return AsyncSandbox(pool=self)

    async def close(self) -> None:
        """Stop refilling and tear every ready sandbox down."""
        self._closed = True
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._filler
        while not self._ready.empty():
            discard(self._ready.get_nowait())
        await wait_for_teardowns()

    async def _fill_forever(self) -> None:
        failures = 0
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while not self._closed and (missing := self.size - self._ready.qsize() - self._starting - self._serving) > 0:
                batch = min(missing, MAX_CONCURRENT_STARTS)
                results = await asyncio.gather(*(self._start_one() for _ in range(batch)))
                failures = 0 if all(results) else failures + 1
                if failures:
                    await asyncio.sleep(min(0.1 * 2**failures, 5.0))

    async def _start_one(self) -> bool:
        self._starting += 1
        try:
            lease = await cold_start(self.spec)
        except TransientError as exc:
            log.warning("pool could not start a sandbox (will retry): %s", exc)
            return False
        finally:
            self._starting -= 1
        # the first request also lets the agent pre-fork the interpreter the run will use
        if self._closed or not await _healthy(lease):
            discard(lease)
            return False
        self._ready.put_nowait(lease)
        return True


def run_files(files: dict[str, bytes | str] | None) -> tuple[tuple[str, bytes], ...]:
    """Check a run's ``files`` (relative path -> content) into the form RunOptions holds."""
    if not files:
        return ()
    if not isinstance(files, dict) or len(files) > wire.MAX_RUN_FILES:
        raise InvalidInputError(f"files must be a dict of at most {wire.MAX_RUN_FILES} relative paths to contents")
    checked = []
    for path, data in files.items():
        problem = wire.run_file_problem(path)
        if problem:
            raise InvalidInputError(f"files: {problem}")
        data = data.encode() if isinstance(data, str) else data
        if not isinstance(data, (bytes, bytearray)) or len(data) > wire.MAX_FILE_BYTES:
            raise InvalidInputError(f"files: {path!r} must be bytes or str of at most {wire.MAX_FILE_BYTES} bytes")
        checked.append((path, bytes(data)))
    return tuple(checked)


async def _healthy(lease: Lease) -> bool:
    if lease.channel.broken or not lease.instance.alive():
        return False
    if time.monotonic() - lease.checked_at < RECHECK_AFTER_S:
        return True
    try:
        event = await asyncio.wait_for(
            lease.channel.call(lambda request_id: PingRequest(id=request_id)), HEALTH_CHECK_TIMEOUT_S
        )
    except (asyncio.TimeoutError, CorralError):
        return False
    if not isinstance(event, Ack):
        return False
    lease.checked_at = time.monotonic()
    return True
