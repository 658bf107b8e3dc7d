"""The background loop the synchronous API runs on: results, errors, iteration and its clean-up."""

from __future__ import annotations

import asyncio
import threading

import pytest

from corral.sync_bridge import bridge


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
