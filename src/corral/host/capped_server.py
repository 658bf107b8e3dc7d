"""A Unix-socket server that holds at most ``limit`` connections at once; the rest wait in the backlog.

The host services a sandbox can reach (its egress proxy, its port-forwarding
socket) cost the host process a descriptor per connection, from the one table
every sandbox shares (``RLIMIT_NOFILE``, at most 20000 on these hosts).
asyncio's servers accept whatever arrives; this one stops accepting while
``limit`` handlers run and resumes when one returns, so a sandbox flooding a
service holds at most ``limit`` of the host's descriptors there: connections
beyond wait in the kernel's backlog, then fail, on the sandbox's side only.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: Connections the kernel queues for the server while it is not accepting.
BACKLOG = 64
#: After accept() failed for want of descriptors or memory, try again this much later.
_RETRY_S = 0.1


class CappedUnixServer:
    """Serves ``handler(reader, writer)`` on ``path``, at most ``limit`` at once (the handler owns the writer)."""

    def __init__(self, handler: Handler, path: Path, limit: int, *, reader_limit: int = 2**16):
        self.handler = handler
        self.path = path
        self.limit = limit
        self.reader_limit = reader_limit
        self.tasks: set[asyncio.Task] = set()
        self._socket: socket.socket | None = None
        self._accepting = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Bind and listen (on the running loop)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            listener.listen(BACKLOG)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._socket = listener
        self._resume()

    def close(self) -> None:
        """Stop listening and cancel every handler (each closes its connection as it ends)."""
        self._pause()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for task in list(self.tasks):
            task.cancel()

    def _resume(self) -> None:
        if not self._accepting and self._socket is not None:
            self._loop.add_reader(self._socket.fileno(), self._accept)
            self._accepting = True

    def _pause(self) -> None:
        if self._accepting:
            self._loop.remove_reader(self._socket.fileno())
            self._accepting = False

    def _accept(self) -> None:
        while len(self.tasks) < self.limit:
            try:
                connection, _ = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause()  # the host is short of descriptors: leave the rest in the backlog a while
                    self._loop.call_later(_RETRY_S, self._resume)
                return
            task = self._loop.create_task(self._serve(connection))
            self.tasks.add(task)
            task.add_done_callback(self._ended)
        self._pause()

    def _ended(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self._resume()

    async def _serve(self, connection: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=connection, limit=self.reader_limit)
        except BaseException:
            connection.close()
            raise
        try:
            await self.handler(reader, writer)
        except BaseException:
            writer.close()
            raise
