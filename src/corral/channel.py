"""The host end of the wire protocol: request ids, and events routed back to their request.

Several operations can be in flight on one channel (a run, a file read, a
cancel); each gets a fresh id and its own queue. A single reader task
validates every frame and routes it. When the byte stream breaks, every
waiting operation gets SandboxCrashedError (the outcome is unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable

from pydantic import BaseModel, ValidationError

from corral.backends.base import Instance
from corral.errors import ProtocolError, SandboxClosedError, SandboxCrashedError
from corral.protocol import TERMINAL_TYPES, Event, encode_request, parse_event

_BROKEN = object()


class Channel:
    """Sends requests to one sandbox's agent and yields the events that answer them."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue] = {}
        self._write_lock = asyncio.Lock()
        self._failure: Exception | None = None
        self._closed = False
        self._reader_task = asyncio.ensure_future(self._read_loop())

    @property
    def broken(self) -> bool:
        """True once the stream to the agent failed."""
        return self._failure is not None

    async def request(self, build: Callable[[int], BaseModel]) -> AsyncIterator[Event]:
        """Send ``build(id)`` and yield its events; the last one is terminal."""
        self._check_usable()
        request_id = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        self._pending[request_id] = queue
        try:
            await self._send(build(request_id))
            while True:
                event = await queue.get()
                if event is _BROKEN:
                    raise self._lost()
                yield event
                if event.type in TERMINAL_TYPES:
                    return
        finally:
            self._pending.pop(request_id, None)

    async def call(self, build: Callable[[int], BaseModel]) -> Event:
        """Send a request that has no streamed events; return its terminal event."""
        async for event in self.request(build):
            if event.type in TERMINAL_TYPES:
                return event
        raise ProtocolError("the agent ended a request without a terminal event")

    async def send_nowait(self, build: Callable[[int], BaseModel]) -> None:
        """Send a request whose answer nobody waits for (a cancel)."""
        self._check_usable()
        await self._send(build(next(self._ids)))

    async def close(self) -> None:
        """Stop routing; waiting operations fail with SandboxClosedError."""
        self._closed = True
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self._fail(SandboxClosedError("the sandbox was closed"))

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxClosedError("the sandbox is closed")
        if self._failure is not None:
            raise self._lost()

    async def _send(self, message: BaseModel) -> None:
        data = encode_request(message)
        async with self._write_lock:
            try:
                self.instance.writer.write(data)
                await self.instance.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self._fail(exc)
                raise SandboxCrashedError(self._failure_message()) from exc

    async def _read_loop(self) -> None:
        reader = self.instance.reader
        try:
            while True:
                line = await reader.readline()
                if not line:
                    self._fail(EOFError("the sandbox's agent exited"))
                    return
                try:
                    event = parse_event(line)
                except (ValueError, ValidationError) as exc:
                    self._fail(ProtocolError(f"invalid frame from the agent: {exc}"))
                    return
                queue = self._pending.get(getattr(event, "id", None))
                if queue is not None:
                    queue.put_nowait(event)
        except (ConnectionError, ValueError) as exc:  # ValueError: frame over the reader's limit
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc
        for queue in self._pending.values():
            queue.put_nowait(_BROKEN)

    def _lost(self) -> Exception:
        """What a waiting operation raises: the close itself, or a crash with the sandbox's last words."""
        if isinstance(self._failure, SandboxClosedError):
            return self._failure
        error = SandboxCrashedError(self._failure_message())
        error.__cause__ = self._failure
        return error

    def _failure_message(self) -> str:
        detail = self.instance.diagnostics()
        message = f"lost the sandbox's agent ({self._failure})"
        return f"{message}; sandbox said: {detail[-1000:]}" if detail else message
