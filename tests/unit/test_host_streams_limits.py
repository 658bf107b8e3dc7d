"""The host end of the host streams against a guest that breaks the flow control.

The guest is untrusted: data past its window and credit past the window must not make the
host buffer without bound. Real sockets: a socketpair as the VM's streams port, a Unix-socket
service in a temporary directory.
"""

from __future__ import annotations

import asyncio
import socket

from corral.backends.microvm.host_streams import HostStreams
from corral.protocol import streams


async def _guest(tmp_path, service):
    server = await asyncio.start_unix_server(service, path=str(tmp_path / "egress.sock"))
    guest, host = socket.socketpair()
    host_streams = HostStreams(*await asyncio.open_connection(sock=host), tmp_path)
    reader, writer = await asyncio.open_connection(sock=guest)
    return server, host_streams, reader, writer


async def _frames_until(reader, done, seconds: float) -> list:
    buffer, frames = bytearray(), []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not done(frames) and loop.time() < end:
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 16), max(end - loop.time(), 0.01))
        except asyncio.TimeoutError:
            break
        if not chunk:
            break
        buffer += chunk
        frames += list(streams.split_frames(buffer))
    return frames


async def test_a_guest_sending_past_its_window_loses_the_stream(tmp_path):
    stalled = asyncio.Event()

    async def service(reader, writer):  # never reads: everything the guest sends stays on the host
        await stalled.wait()
        writer.close()

    server, host_streams, reader, writer = await _guest(tmp_path, service)
    writer.write(streams.frame(streams.OPEN, 1, b"egress.sock"))
    chunk = b"x" * streams.MAX_DATA
    for _ in range(4 * streams.WINDOW // streams.MAX_DATA):  # four windows, never waiting for credit
        writer.write(streams.frame(streams.DATA, 1, chunk))
    await writer.drain()
    frames = await _frames_until(reader, lambda frames: (streams.CLOSE, 1, b"") in frames, 5)
    assert (streams.CLOSE, 1, b"") in frames
    queued = sum(len(item) for stream in host_streams.streams.values() for item in stream.to_service._queue
                 if item)
    assert queued <= streams.WINDOW
    stalled.set()
    await host_streams.close()
    writer.close()
    server.close()


async def test_credit_past_the_window_is_not_honoured(tmp_path):
    async def service(reader, writer):  # sends far more than one window at once
        writer.write(b"y" * (4 * streams.WINDOW))
        await writer.drain()
        await reader.read()

    server, host_streams, reader, writer = await _guest(tmp_path, service)
    writer.write(streams.frame(streams.OPEN, 1, b"egress.sock") + streams.frame(streams.CREDIT, 1, length=2**32 - 1))
    await writer.drain()
    frames = await _frames_until(reader, lambda frames: False, 1.5)  # the guest reads but credits nothing back
    received = sum(len(value) for kind, stream_id, value in frames if kind == streams.DATA)
    assert 0 < received <= streams.WINDOW
    await host_streams.close()
    writer.close()
    server.close()
