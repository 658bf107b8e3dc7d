"""One background event loop that the synchronous API runs its coroutines on.

The synchronous classes are thin mirrors of the async ones; each call is
submitted to this loop and waited for. At interpreter exit the shared pools
are closed and background teardowns are awaited, so no sandbox or cgroup
outlives the program.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar

_T = TypeVar("_T")
_EXIT_TIMEOUT_S = 30.0


class _Bridge:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="corral-loop", daemon=True).start()
                atexit.register(self._shutdown)
            return self._loop

    def owns_running_loop(self) -> bool:
        """True when called from a coroutine on the bridge's loop (never starts the loop)."""
        return self._loop is not None and _running_on(self._loop)

    def call(self, awaitable: Awaitable[_T]) -> _T:
        loop = self.loop()
        if _running_on(loop):
            raise RuntimeError("the synchronous corral API cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while True:
                try:
                    yield self.call(anext(iterator))
                except StopAsyncIteration:
                    return
        finally:
            self.call(iterator.aclose())

    def _shutdown(self) -> None:
        from corral.lease import wait_for_teardowns
        from corral.oneshot import close_default_pools

        async def finish() -> None:
            await close_default_pools()
            await wait_for_teardowns()

        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(finish(), loop).result(_EXIT_TIMEOUT_S)
            except Exception:
                pass


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


bridge = _Bridge()
