"""The host's end of the host streams (see ``corral.protocol.streams``) for one VM.

The guest agent cannot reach the Unix sockets of the sandbox's services
(egress proxy, port forwarding) the way a process sandbox does through a bind
mount, so it opens streams over a second virtio-serial port; here each stream
becomes a connection to the named socket in the VM's private directory. Every
stream has a task per direction: the guest's bytes are written and drained
before they are credited back, the service's bytes are sent only within the
guest's credit, so a slow peer stalls its own stream and nothing else.

The guest is not trusted to keep to the protocol: a stream whose guest sends
more than the window it was credited is closed, credit it grants beyond the
window is ignored (either would make the host buffer without bound), and at most
:data:`MAX_STREAMS` are open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from corral.protocol import streams

#: Streams one VM may have open at once (each holds a host descriptor: a connection to a service).
MAX_STREAMS = 256


class _Stream:
    def __init__(self) -> None:
        self.to_service: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.credit = streams.WINDOW  # bytes the host may still send to the guest
        self.credited = asyncio.Event()
        self.unacknowledged = 0  # bytes from the guest not yet credited back
        self.task: asyncio.Task | None = None


class HostStreams:
    """Serves the streams a VM's agent opens, over ``reader``/``writer`` (the VM's streams socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service_dir: Path):
        self.reader = reader
        self.writer = writer
        self.service_dir = service_dir
        self.streams: dict[int, _Stream] = {}
        self.tasks: set[asyncio.Task] = set()
        self.task = asyncio.ensure_future(self._serve())

    def close_now(self) -> None:
        """Stop serving and drop every stream, without awaiting (the tasks end at their next step)."""
        for task in [self.task, *self.tasks]:
            task.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()

    async def close(self) -> None:
        """Stop serving, drop every stream and wait until its tasks have ended."""
        tasks = [self.task, *self.tasks]
        self.close_now()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _send(self, kind: int, stream_id: int, payload: bytes = b"", length: int | None = None) -> None:
        if not self.writer.is_closing():
            self.writer.write(streams.frame(kind, stream_id, payload, length))

    async def _serve(self) -> None:
        buffer = bytearray()
        while chunk := await self.reader.read(1 << 16):
            buffer += chunk
            try:
                frames = list(streams.split_frames(buffer))
            except ValueError:
                return  # a guest that breaks the framing loses its streams
            for kind, stream_id, value in frames:
                self._on_frame(kind, stream_id, value)

    def _on_frame(self, kind: int, stream_id: int, value) -> None:
        stream = self.streams.get(stream_id)
        if kind == streams.OPEN:
            name = value.decode(errors="replace")
            if stream is not None or name not in streams.SERVICES or len(self.streams) >= MAX_STREAMS:
                self._send(streams.CLOSE, stream_id)
                return
            self.streams[stream_id] = stream = _Stream()
            stream.task = self._spawn(self._run(stream_id, stream, self.service_dir / name))
        elif stream is None:
            return
        elif kind == streams.DATA:
            stream.unacknowledged += len(value)
            if stream.unacknowledged > streams.WINDOW:  # past its window: the guest breaks the protocol
                self._drop(stream_id, stream)
                return
            stream.to_service.put_nowait(value)
        elif kind == streams.CLOSE:
            stream.to_service.put_nowait(None)
        elif kind == streams.CREDIT:
            stream.credit = min(stream.credit + value, streams.WINDOW)
            stream.credited.set()

    def _drop(self, stream_id: int, stream: _Stream) -> None:
        """End ``stream`` now: its service connection is closed, the guest gets CLOSE."""
        del self.streams[stream_id]
        if stream.task is not None:
            stream.task.cancel()
        self._send(streams.CLOSE, stream_id)

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _forget(self, stream_id: int, stream: _Stream) -> None:
        if self.streams.get(stream_id) is stream:  # not a later stream that reuses the id
            del self.streams[stream_id]

    async def _run(self, stream_id: int, stream: _Stream, path: Path) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            self._send(streams.CLOSE, stream_id)
            self._forget(stream_id, stream)
            return
        try:
            await asyncio.gather(self._to_guest(stream_id, stream, reader), self._to_service(stream_id, stream, writer))
        except (OSError, ConnectionError):
            self._send(streams.CLOSE, stream_id)
        finally:
            self._forget(stream_id, stream)
            writer.close()

    async def _to_guest(self, stream_id: int, stream: _Stream, reader: asyncio.StreamReader) -> None:
        while True:
            while stream.credit <= 0:
                stream.credited.clear()
                await stream.credited.wait()
            data = await reader.read(min(stream.credit, streams.MAX_DATA))
            if not data:
                self._send(streams.CLOSE, stream_id)
                return
            stream.credit -= len(data)
            self._send(streams.DATA, stream_id, data)

    async def _to_service(self, stream_id: int, stream: _Stream, writer: asyncio.StreamWriter) -> None:
        while (data := await stream.to_service.get()) is not None:
            writer.write(data)
            await writer.drain()
            stream.unacknowledged -= len(data)
            self._send(streams.CREDIT, stream_id, length=len(data))
        if writer.can_write_eof():
            writer.write_eof()
