"""Fuzzing the host streams: the framing parser and the host's end, fed a hostile guest's bytes.

``streams.split_frames`` may only yield well-formed frames or raise ValueError; the host's end
(``HostStreams``) must survive any sequence of well-framed but hostile frames. Longer runs:
``scripts/fuzz.py``.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.backends.microvm.host_streams import HostStreams
from corral.protocol import streams

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split_everything(data: bytes, cuts: list[int]) -> list:
    """Feed ``data`` in pieces cut at ``cuts``; the frames parsed, or None once the framing broke."""
    buffer, got = bytearray(), []
    pieces, start = [], 0
    for cut in sorted(cut % (len(data) + 1) for cut in cuts):
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    for piece in pieces:
        buffer += piece
        try:
            got += list(streams.split_frames(buffer))
        except ValueError:
            return None
    return got


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=6))
def test_any_bytes_split_anywhere(data, cuts):
    got = split_everything(data, cuts)
    for kind, stream_id, value in got or []:
        assert kind in (streams.OPEN, streams.DATA, streams.CLOSE, streams.CREDIT)
        assert 0 <= stream_id < 2**32
        if kind == streams.CREDIT:
            assert 0 <= value < 2**32
        else:
            assert len(value) <= streams.MAX_DATA


hostile_frames = st.lists(st.tuples(
    st.sampled_from([streams.OPEN, streams.DATA, streams.CLOSE, streams.CREDIT]),
    st.integers(0, 3) | st.integers(0, 2**32 - 1),
    st.sampled_from([b"egress.sock", b"ports.sock", b"../x", b""]) | st.binary(max_size=64),
    st.integers(0, 2**32 - 1),
), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_frames)
def test_the_host_end_survives_any_frame_sequence(sequence):
    asyncio.run(_feed(sequence))


async def _feed(sequence) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async def echo(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_unix_server(echo, path=str(Path(directory) / "egress.sock"))
        guest, host = socket.socketpair()
        host_streams = HostStreams(*await asyncio.open_connection(sock=host), Path(directory))
        reader, writer = await asyncio.open_connection(sock=guest)
        for kind, stream_id, payload, credit in sequence:
            if kind == streams.CREDIT:
                writer.write(streams.frame(kind, stream_id, length=credit))
            else:
                writer.write(streams.frame(kind, stream_id, payload))
        await writer.drain()
        await asyncio.sleep(0.02)
        assert not host_streams.task.done(), "the host stopped serving well-framed input"
        assert all(not task.done() or task.cancelled() or task.exception() is None for task in host_streams.tasks)
        await host_streams.close()
        writer.close()
        server.close()
        await server.wait_closed()
