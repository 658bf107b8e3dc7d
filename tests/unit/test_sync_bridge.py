"""The sync API's background loop: callbacks in the caller's thread, exit hooks, and fork safety."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

from corral.sync_bridge import Relay, bridge


async def _emit(callback, texts: list[str], then: str = "done") -> str:
    for text in texts:
        callback(text)
        await asyncio.sleep(0)
    return then


def test_relayed_callbacks_run_in_the_calling_thread_in_order_before_the_call_returns():
    seen = []
    relay = Relay()
    result = bridge.call(_emit(relay.wrap(lambda text: seen.append((text, threading.get_ident()))), list("abc")),
                         relay)
    assert result == "done"
    assert seen == [(text, threading.get_ident()) for text in "abc"]


def test_a_call_without_callbacks_does_not_wait_on_a_relay():
    relay = Relay()
    assert relay.wrap(None) is None and not relay.used
    assert bridge.call(asyncio.sleep(0, result=7), relay) == 7


def test_a_callback_that_raises_cancels_the_call_and_its_error_reaches_the_caller():
    cancelled = threading.Event()

    async def long_run(callback) -> None:
        try:
            callback("first")
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def explode(text: str) -> None:
        raise RuntimeError(f"callback failed on {text}")

    relay = Relay()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="callback failed on first"):
        bridge.call(long_run(relay.wrap(explode)), relay)
    assert cancelled.wait(5) and time.monotonic() - started < 5


def test_the_loop_refuses_sync_calls_from_its_own_thread():
    async def nested() -> None:
        bridge.call(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="its own event loop"):
        bridge.call(nested())
    assert not bridge.owns_running_loop()
    assert bridge.call(_running_on_bridge())


async def _running_on_bridge() -> bool:
    return bridge.owns_running_loop()


def test_exit_hooks_run_on_the_loop_at_exit_latest_first():
    program = textwrap.dedent("""
        import asyncio
        from corral.sync_bridge import bridge

        async def hook(name):
            await asyncio.sleep(0.01)
            print(name, bridge.owns_running_loop(), flush=True)

        bridge.at_exit(lambda: hook("registered first"))
        bridge.at_exit(lambda: hook("registered last"))
        bridge.call(asyncio.sleep(0))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["registered last True", "registered first True"]


def _wait_for_child(pid: int, seconds: float) -> int | None:
    """The child's exit status, or None if it was still running after ``seconds`` (then it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def test_a_forked_child_gets_a_loop_of_its_own():
    assert bridge.call(asyncio.sleep(0, result="parent")) == "parent"  # the parent's loop thread runs
    parent_loop = bridge.loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork of a process with threads
        pid = os.fork()
    if pid == 0:  # the child: report by exit code only, never return into pytest
        try:
            relay = Relay()
            seen = []
            ok = (bridge.call(_emit(relay.wrap(seen.append), ["x"], then="child"), relay) == "child"
                  and seen == ["x"] and bridge.loop() is not parent_loop)
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    assert _wait_for_child(pid, 20) == 0, "the sync call in the forked child failed or hung"
    assert bridge.call(asyncio.sleep(0, result="still")) == "still" and bridge.loop() is parent_loop


def test_call_returns_the_coroutine_result_computed_on_the_background_loop():
    async def where():
        await asyncio.sleep(0)
        return threading.current_thread().name, asyncio.get_running_loop()

    thread, loop = bridge.call(where())
    assert thread == "corral-loop" and thread != threading.current_thread().name
    assert loop is bridge.loop()
    assert bridge.call(where())[1] is loop  # one loop for every call


def test_call_raises_the_coroutine_exception_itself():
    class Boom(Exception):
        pass

    async def fail():
        raise Boom("from the loop")

    with pytest.raises(Boom, match="from the loop"):
        bridge.call(fail())


def test_call_accepts_a_task_as_well_as_a_coroutine():
    async def seven():
        return 7

    async def schedule():
        return asyncio.ensure_future(seven())

    task = bridge.call(schedule())  # a task on the bridge's loop, awaited from this thread
    assert isinstance(task, asyncio.Task) and bridge.call(task) == 7


def test_calling_from_the_loop_itself_is_refused_rather_than_deadlocking():
    async def nested():
        inner = asyncio.sleep(0)
        try:
            bridge.call(inner)
        finally:
            inner.close()

    with pytest.raises(RuntimeError, match="cannot be called from its own event loop"):
        bridge.call(nested())


def test_iterate_yields_every_item_in_order():
    async def numbers():
        for number in range(5):
            await asyncio.sleep(0)
            yield number

    assert list(bridge.iterate(numbers())) == [0, 1, 2, 3, 4]


def test_iterate_closes_the_async_iterator_when_the_caller_stops_early():
    closed = []

    async def endless():
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.append(threading.current_thread().name)

    iterator = bridge.iterate(endless())
    assert [next(iterator), next(iterator), next(iterator)] == [0, 1, 2]
    iterator.close()
    assert closed == ["corral-loop"]  # its finally ran, on the loop


def test_iterate_raises_what_the_async_iterator_raises_after_its_items():
    async def then_fail():
        yield "a"
        raise ValueError("broke")

    seen = []
    with pytest.raises(ValueError, match="broke"):
        for item in bridge.iterate(then_fail()):
            seen.append(item)
    assert seen == ["a"]
