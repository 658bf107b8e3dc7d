"""The agent validates everything it receives: garbage frames get errors, never a crash."""

from __future__ import annotations

import asyncio

import pytest

import corral
from corral.protocol import Ack, PingRequest, parse_event

pytestmark = pytest.mark.sandbox

HOSTILE_FRAMES = [
    b"not json at all",
    b"\xff\xfe\x00 invalid utf-8",
    b"[1, 2, 3]",
    b'{"id": 1}',
    b'{"type": 7, "id": 1}',
    b'{"type": "exec", "id": "one"}',
    b'{"type": "exec", "id": 2}',
    b'{"type": "exec", "id": 3, "language": "cobol", "code": "x", "timeout_ms": 100}',
    b'{"type": "exec", "id": 4, "language": "python", "code": 5, "timeout_ms": 100}',
    b'{"type": "exec", "id": 5, "language": "python", "code": "1", "timeout_ms": -1}',
    b'{"type": "exec", "id": 6, "language": "python", "code": "1", "timeout_ms": 100, "env": ["x"]}',
    b'{"type": "exec", "id": 7, "language": "python", "code": "1", "timeout_ms": 100, "env": {"LD_PRELOAD": "x"}}',
    b'{"type": "exec", "id": 8, "language": "shell", "code": "1", "timeout_ms": 100, "stdin_b64": "%%%"}',
    b'{"type": "exec", "id": 9, "language": "shell", "code": "1", "timeout_ms": 100, "cwd": "a\\u0000b"}',
    b'{"type": "file_read", "id": 10, "path": 42}',
    b'{"type": "file_write", "id": 11, "path": "x", "data_b64": "!!"}',
    b'{"type": "file_list", "id": 12, "path": "/proc/1/fd"}',
    b'{"type": "cancel", "id": 13, "target": 99999}',
    b'{"type": "port_connect", "id": 14, "port": 1, "token": "x"}',
    b'{"type": "launch_missiles", "id": 15}',
    b'{"type": "ping", "id": true}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"type": "ping", "id": 16, "pad": "' + b"x" * 3_000_000 + b'"}',
]


async def test_hostile_frames_get_errors_and_the_agent_keeps_serving():
    async with corral.AsyncSandbox() as sandbox:
        writer = sandbox._lease.instance.writer
        for frame in HOSTILE_FRAMES:
            writer.write(frame + b"\n")
        await writer.drain()
        ping = await asyncio.wait_for(sandbox._lease.channel.call(lambda i: PingRequest(id=i)), 10)
        assert isinstance(ping, Ack)
        assert (await sandbox.run("print('still serving')")).stdout == "still serving\n"
        assert (await sandbox.commands.run("echo ok")).stdout == "ok\n"


def test_hostile_event_frames_are_refused_on_the_host():
    for frame in (b'{"type": "exec_done", "id": 1}', b'{"type": "output", "id": 1, "stream": "stdin", "data": ""}',
                  b'{"type": "hello", "version": "1", "pid": 1, "python": "3"}', b'{"type": "nope"}', b"[]"):
        with pytest.raises(ValueError):
            parse_event(frame)


async def test_a_frame_over_the_limit_is_dropped_and_frames_split_in_small_pieces_are_read():
    async with corral.AsyncSandbox() as sandbox:
        writer = sandbox._lease.instance.writer
        oversized = b'{"type": "ping", "id": 1, "pad": "' + b"x" * (25 << 20) + b'"}\n'
        for start in range(0, len(oversized), 1 << 16):
            writer.write(oversized[start:start + (1 << 16)])
            await writer.drain()
        result = asyncio.ensure_future(sandbox.run("print('split')"))
        await asyncio.sleep(0)
        assert (await asyncio.wait_for(result, 30)).stdout == "split\n"
        ping = await asyncio.wait_for(sandbox._lease.channel.call(lambda i: PingRequest(id=i)), 10)
        assert isinstance(ping, Ack)
