"""CappedUnixServer: never more than ``limit`` connections accepted at once, the rest served later."""

from __future__ import annotations

import asyncio
import os

from corral.host.capped_server import CappedUnixServer


async def test_connections_beyond_the_limit_wait_and_are_served_later(tmp_path):
    running, peak, release = 0, 0, asyncio.Event()

    async def handler(reader, writer):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        writer.write(b"ok")
        await writer.drain()
        writer.close()
        running -= 1

    server = CappedUnixServer(handler, tmp_path / "s.sock", limit=2)
    server.start()
    before = len(os.listdir("/proc/self/fd"))
    clients = [await asyncio.open_unix_connection(str(tmp_path / "s.sock")) for _ in range(10)]
    await asyncio.sleep(0.2)
    # ten clients connected (they wait in the backlog), two accepted: two host descriptors, not ten
    assert running == 2 and len(server.tasks) == 2
    assert len(os.listdir("/proc/self/fd")) - before == 10 + 2
    release.set()
    answers = [await asyncio.wait_for(reader.read(), 5) for reader, _ in clients]
    assert answers == [b"ok"] * 10 and peak == 2
    for _, writer in clients:
        writer.close()
    server.close()


async def test_close_cancels_the_handlers_and_stops_listening(tmp_path):
    started = asyncio.Event()

    async def handler(reader, writer):
        started.set()
        await reader.read()  # would wait for ever

    server = CappedUnixServer(handler, tmp_path / "s.sock", limit=4)
    server.start()
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
    await asyncio.wait_for(started.wait(), 5)
    tasks = list(server.tasks)
    server.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the host's end was closed
    writer.close()
