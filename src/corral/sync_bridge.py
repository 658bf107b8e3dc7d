"""One background event loop that the synchronous API runs its coroutines on.

The synchronous classes are thin mirrors of the async ones; each call is
submitted to this loop and waited for. Output callbacks of a sync call run in
the calling thread, never on the loop (see :class:`Relay`). Modules that keep
state on the loop register a coroutine to run at interpreter exit with
:meth:`_Bridge.at_exit` (the shared pools close, background teardowns are
awaited, so no sandbox or cgroup outlives the program). After ``os.fork()``
the child starts a loop of its own on its first call (the parent's loop thread
does not exist there).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")
_EXIT_TIMEOUT_S = 30.0
#: The loops of parents a process was forked from: kept referenced, so that their finalizer never runs
#: in the child (it would unregister file descriptors from an epoll set the child shares with the parent).
_inherited_loops: list[asyncio.AbstractEventLoop] = []


class Relay:
    """Callbacks handed to a coroutine on the loop, called in the thread that waits for it.

    ``relay.wrap(callback)`` gives a function for the loop to call; the call is queued and
    :meth:`_Bridge.call` makes it in the waiting thread, in order, before returning.
    """

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self.used = False

    def wrap(self, callback: Callable[..., Any] | None) -> Callable[..., None] | None:
        """A stand-in for ``callback`` that queues its calls (None stays None)."""
        if callback is None:
            return None
        self.used = True
        return lambda *args: self.calls.put((callback, args))


class _Bridge:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._exit_hooks: list[Callable[[], Awaitable[Any]]] = []
        self._exit_registered = False

    def loop(self) -> asyncio.AbstractEventLoop:
        """The background loop, started on first use."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="corral-loop", daemon=True).start()
                if not self._exit_registered:  # after the modules' own atexit handlers, so it runs before them
                    atexit.register(self._shutdown)
                    self._exit_registered = True
            return self._loop

    def owns_running_loop(self) -> bool:
        """True when called on the background loop (never starts it)."""
        return self._loop is not None and _running_on(self._loop)

    def at_exit(self, hook: Callable[[], Awaitable[Any]]) -> None:
        """Run ``hook()`` on the loop at interpreter exit, if the loop was started; hooks run in the
        reverse order of registration (a module registered later, higher up, cleans up first)."""
        self._exit_hooks.append(hook)

    def call(self, awaitable: Awaitable[_T], relay: Relay | None = None) -> _T:
        """Run ``awaitable`` on the loop and return its result; ``relay``'s callbacks are called in
        this thread as the loop hands them over (a callback that raises cancels the call)."""
        loop = self.loop()
        if _running_on(loop):
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never to run: no "never awaited" warning
            raise RuntimeError("the synchronous corral API cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), loop)
        try:
            if relay is not None and relay.used:
                _deliver(relay, future)
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        """An async iterator of the loop, as a plain one."""
        try:
            while True:
                try:
                    yield self.call(anext(iterator))
                except StopAsyncIteration:
                    return
        finally:
            self.call(iterator.aclose())

    def _shutdown(self) -> None:
        async def finish() -> None:
            for hook in reversed(self._exit_hooks):
                try:
                    await hook()
                except Exception:
                    pass

        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(finish(), loop).result(_EXIT_TIMEOUT_S)
            except Exception:
                pass

    def _forget_after_fork(self) -> None:
        """In a forked child: the loop thread is gone; the next call starts a loop of the child's own."""
        if self._loop is not None:
            _inherited_loops.append(self._loop)
        self._loop = None
        self._lock = threading.Lock()  # another thread of the parent may have held it at the fork


def _deliver(relay: Relay, future: concurrent.futures.Future) -> None:
    """Make the relayed calls in this thread until ``future`` is done (the done marker comes last)."""
    future.add_done_callback(lambda _: relay.calls.put(None))
    while (call := relay.calls.get()) is not None:
        callback, args = call
        callback(*args)


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


bridge = _Bridge()
os.register_at_fork(after_in_child=bridge._forget_after_fork)
