"""Standard input relayed through a pipe of our own, so that a signal can end the stdio server as EOF does.

The MCP SDK reads stdin on a worker thread, which nothing can interrupt while
the client keeps its end open. The relay puts a pipe in front of it: fd 0
becomes the pipe's read end, and the client's bytes are copied in by an event
loop task. Stopping the relay closes the write end, so the SDK sees end of
input and the server shuts down the way it does when the client leaves.
"""

from __future__ import annotations

import os
import stat

import anyio

#: Bytes copied per read.
CHUNK = 65536


class StdinRelay:
    """Copies the process's stdin into a pipe that becomes fd 0; :meth:`stop` gives the reader EOF."""

    def __init__(self) -> None:
        """Put the pipe in place as fd 0 (before anything reads stdin)."""
        self._scope = anyio.CancelScope()
        self._fds: tuple[int, int] | None = None
        # a regular file (`corral mcp < requests.jsonl`) cannot be waited on, and it always reaches its end
        if stat.S_ISREG(os.fstat(0).st_mode):
            return
        source = os.dup(0)
        read_end, sink = os.pipe()
        os.dup2(read_end, 0)
        os.close(read_end)
        # only our own end is made non-blocking: the client's may be a terminal shared with a shell, and a read
        # after the loop said "readable" does not block (we are its only reader)
        os.set_blocking(sink, False)
        self._fds = source, sink

    async def run(self) -> None:
        """Relay until the client closes its end or :meth:`stop` is called; then close the pipe."""
        if self._fds is None:
            return
        source, sink = self._fds
        try:
            with self._scope:
                while chunk := await _read(source):
                    await _write_all(sink, chunk)
        finally:
            os.close(sink)
            os.close(source)

    def stop(self) -> None:
        """End the relayed input now: the reader of fd 0 sees EOF."""
        self._scope.cancel()


async def _read(fd: int) -> bytes:
    await anyio.wait_readable(fd)
    return os.read(fd, CHUNK)


async def _write_all(fd: int, data: bytes) -> None:
    while data:
        await anyio.wait_writable(fd)
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            continue
