"""``files.watch``: changes below a sandbox directory as an async iterator of FileEvents.

The agent watches with inotify and streams ``fs_event`` events (see
docs/protocol.md); a reader task puts them on a bounded queue here, so a
consumer that falls behind loses events (reported as one ``overflow`` event)
instead of making the host buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from corral.channel import Channel
from corral.agent_errors import agent_error
from corral.errors import ProtocolError
from corral.models import FileEvent
from corral.protocol import CancelRequest, Error, FsEvent, WatchStarted, WatchStartRequest

#: FileEvents a watch holds for its consumer before it drops them.
MAX_QUEUED_EVENTS = 10_000
_END = object()


class AsyncFileWatch:
    """A directory watch: ``async for event in watch`` until :meth:`close` (or ``async with``)."""

    def __init__(self, channel: Channel, events: AsyncIterator[Any], request_id: int):
        self._channel = channel
        self._events = events
        self._request_id = request_id
        self._queue: asyncio.Queue = asyncio.Queue()
        self._dropping = False
        self._closed = False
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, channel: Channel, path: str, recursive: bool) -> AsyncFileWatch:
        """Ask the agent to watch ``path``; return once the watch is in place."""
        sent: list[int] = []

        def build(request_id: int) -> WatchStartRequest:
            sent.append(request_id)
            return WatchStartRequest(id=request_id, path=path, recursive=recursive)

        events = channel.request(build)
        first = await anext(events)
        if isinstance(first, Error):
            await events.aclose()
            raise agent_error(first, "file")
        if not isinstance(first, WatchStarted):
            await events.aclose()
            raise ProtocolError(f"expected watch_started, got {first.type}")
        return cls(channel, events, sent[0])

    async def _read(self) -> None:
        try:
            async for event in self._events:
                if isinstance(event, FsEvent):
                    self._put(FileEvent(kind=event.kind, name=event.name, is_dir=event.is_dir))
        except Exception:  # the sandbox closed or crashed: the watch simply ends
            pass
        finally:
            self._queue.put_nowait(_END)

    def _put(self, event: FileEvent) -> None:
        if self._queue.qsize() < MAX_QUEUED_EVENTS:
            self._dropping = False
            self._queue.put_nowait(event)
        elif not self._dropping:  # one overflow marker per run of lost events (it may exceed the bound by one)
            self._dropping = True
            self._queue.put_nowait(FileEvent(kind="overflow", name=""))

    def __aiter__(self) -> AsyncIterator[FileEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[FileEvent]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # every later iteration ends too
                return
            yield item

    def pending(self) -> list[FileEvent]:
        """The events that arrived and were not consumed yet (without waiting)."""
        items = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _END:
                self._queue.put_nowait(_END)
                break
            items.append(item)
        return items

    async def close(self) -> None:
        """Stop watching; iteration ends after the events already received."""
        if self._closed:
            return
        self._closed = True
        if not self._task.done() and not self._channel.broken:
            with contextlib.suppress(Exception):
                await self._channel.send_nowait(lambda own_id: CancelRequest(id=own_id, target=self._request_id))
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
        if not self._task.done():
            self._task.cancel()

    async def __aenter__(self) -> AsyncFileWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
