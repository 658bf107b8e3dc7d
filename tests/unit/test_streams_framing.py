"""The host streams' framing (corral.protocol.streams), both ends' parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.protocol import streams


def test_frames_round_trip_even_when_split_anywhere():
    data = (streams.frame(streams.OPEN, 1, b"egress.sock") + streams.frame(streams.DATA, 1, b"x" * 1000)
            + streams.frame(streams.CREDIT, 1, length=500) + streams.frame(streams.CLOSE, 1))
    for cut in range(len(data) + 1):
        buffer = bytearray(data[:cut])
        got = list(streams.split_frames(buffer))
        buffer += data[cut:]
        got += list(streams.split_frames(buffer))
        assert got == [(streams.OPEN, 1, b"egress.sock"), (streams.DATA, 1, b"x" * 1000),
                       (streams.CREDIT, 1, 500), (streams.CLOSE, 1, b"")]
        assert not buffer


@given(st.binary(max_size=streams.MAX_DATA), st.integers(0, 2**32 - 1))
def test_any_payload_and_stream_id(payload, stream_id):
    buffer = bytearray(streams.frame(streams.DATA, stream_id, payload))
    assert list(streams.split_frames(buffer)) == [(streams.DATA, stream_id, payload)]


@pytest.mark.parametrize("header", [streams.HEADER.pack(9, 1, 0), streams.HEADER.pack(streams.DATA, 1, streams.MAX_DATA + 1)])
def test_malformed_frames_are_refused(header):
    with pytest.raises(ValueError):
        list(streams.split_frames(bytearray(header)))


async def test_the_host_end_opens_only_the_two_service_sockets(tmp_path):
    import asyncio
    import socket

    from corral.backends.microvm.host_streams import HostStreams

    served = []

    async def service(reader, writer):
        served.append(await reader.read(5))
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(service, path=str(tmp_path / "egress.sock"))
    guest, host = socket.socketpair()
    host_streams = HostStreams(*await asyncio.open_connection(sock=host), tmp_path)
    reader, writer = await asyncio.open_connection(sock=guest)
    writer.write(streams.frame(streams.OPEN, 7, b"../../etc/passwd") + streams.frame(streams.OPEN, 8, b"egress.sock")
                 + streams.frame(streams.DATA, 8, b"ping!") + streams.frame(streams.CLOSE, 8))
    buffer, frames = bytearray(), []
    while (streams.CLOSE, 8, b"") not in frames:
        buffer += await asyncio.wait_for(reader.read(1024), 5)
        frames += list(streams.split_frames(buffer))
    assert frames[0] == (streams.CLOSE, 7, b"")  # refused at once
    assert (streams.DATA, 8, b"pong") in frames and (streams.CREDIT, 8, 5) in frames and served == [b"ping!"]
    await host_streams.close()
    writer.close()
    server.close()
