"""Copying bytes both ways between two asyncio streams until both sides are done."""

from __future__ import annotations

import asyncio
import contextlib

_CHUNK = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice(
    a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter,
) -> None:
    """Relay a<->b until both directions reached EOF (or broke), then close both."""
    try:
        await asyncio.gather(_pump(a_reader, b_writer), _pump(b_reader, a_writer))
    finally:
        for writer in (a_writer, b_writer):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
