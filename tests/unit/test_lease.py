"""A lease's background teardown: it returns at once, stops the sandbox a moment later, and never leaks one."""

from __future__ import annotations

import asyncio

import pytest

from corral.channel import Channel
from corral.errors import SandboxClosedError
from corral.lease import TEARDOWN_DELAY_S, Lease, discard, wait_for_teardowns
from corral.protocol import PingRequest
from scripted_agent import ScriptedInstance


async def _lease() -> Lease:
    instance = await ScriptedInstance.open()
    return Lease(instance, Channel(instance), "scripted", warm=False)


async def test_discard_returns_at_once_and_the_stop_follows_in_the_background():
    lease = await _lease()
    discard(lease)
    assert not lease.instance.stopped  # the caller's continuation runs first
    await wait_for_teardowns()
    assert lease.instance.stopped
    with pytest.raises(SandboxClosedError):  # its channel was closed on purpose: closed, not crashed
        await lease.channel.call(lambda i: PingRequest(id=i))


async def test_wait_for_teardowns_waits_for_every_discarded_sandbox():
    leases = [await _lease() for _ in range(12)]  # more than run at once
    for lease in leases:
        discard(lease)
    await wait_for_teardowns()
    assert all(lease.instance.stopped for lease in leases)


def _teardown_task() -> asyncio.Task:
    return next(task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "_Teardowns._stop")


async def test_a_teardown_cancelled_while_it_waits_still_stops_the_sandbox():
    lease = await _lease()
    discard(lease)
    teardown = _teardown_task()
    await asyncio.sleep(0)  # it started: it waits out TEARDOWN_DELAY_S
    teardown.cancel()
    await asyncio.sleep(TEARDOWN_DELAY_S * 2)
    assert teardown.cancelled() and lease.instance.stopped
    await lease.channel.close()


async def test_a_teardown_cancelled_before_it_ever_ran_still_stops_the_sandbox():
    # a shutdown that cancels every task in the same loop iteration as the close: the teardown never ran
    lease = await _lease()
    discard(lease)
    teardown = _teardown_task()
    teardown.cancel()
    await asyncio.sleep(TEARDOWN_DELAY_S * 2)
    assert teardown.cancelled() and lease.instance.stopped
    await lease.channel.close()


def test_a_sandbox_closed_as_asyncio_run_returns_is_stopped():  # asyncio.run cancels what is left
    instances = []

    async def main():
        lease = await _lease()
        instances.append(lease.instance)
        discard(lease)  # and return at once

    asyncio.run(main())
    assert instances[0].stopped


async def test_setup_and_boot_time_count_only_for_a_cold_start():
    lease = await _lease()
    assert (lease.setup_ms, lease.boot_ms) == (1.5, 2.5)
    lease.warm = True
    assert (lease.setup_ms, lease.boot_ms) == (0.0, 0.0)
    lease.instance.stop_now()
