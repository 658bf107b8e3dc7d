"""The agent's end of the host streams (see ``corral.protocol.streams``), in a VM guest.

Each stream is a local socket pair: the relay that wanted a host connection
gets one end, as if it were a connected Unix socket, and this module copies
between the other end and the multiplexed channel, within each stream's
window. Everything runs on the agent's loop; nothing blocks.
"""

from __future__ import annotations

import itertools
import os
import socket

from corral.protocol import streams


class _Stream:
    def __init__(self, local):
        self.local = local
        self.credit = streams.WINDOW  # bytes we may still send to the host
        self.pending = bytearray()  # bytes from the host not yet written to local
        self.host_closed = False  # the host sent CLOSE: nothing more will come
        self.local_closed = False  # local EOF: we sent CLOSE
        self.shut = False  # local write side shut down after host_closed


class HostStreams:
    """Streams to the host's service sockets over the channel on ``fd``."""

    def __init__(self, agent, fd):
        self.agent = agent
        self.fd = fd
        self.ids = itertools.count(1)
        self.streams = {}
        self.incoming = bytearray()
        self.outgoing = bytearray()
        os.set_blocking(fd, False)
        agent.watch(fd, self._on_channel)

    def open(self, service):
        """A socket connected, through the host, to its service socket ``service``."""
        mine, theirs = socket.socketpair()
        stream_id = next(self.ids)
        mine.setblocking(False)
        self.streams[stream_id] = _Stream(mine)
        self.agent.watch(mine.fileno(), lambda: self._on_local(stream_id))
        self._send(streams.frame(streams.OPEN, stream_id, service.encode()))
        return theirs

    # --- channel -----------------------------------------------------------

    def _send(self, data):
        self.outgoing += data
        self._flush()

    def _flush(self):
        while self.outgoing:
            try:
                written = os.write(self.fd, self.outgoing)
            except BlockingIOError:
                break
            except OSError:
                self.outgoing.clear()
                break
            del self.outgoing[:written]
        self.agent.rewatch(self.fd, True, bool(self.outgoing))

    def _on_channel(self):
        self._flush()
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # no host on the other end (yet, or any more): nothing to read
            return
        self.incoming += chunk
        try:
            for kind, stream_id, value in streams.split_frames(self.incoming):
                self._on_frame(kind, stream_id, value)
        except ValueError:
            self.incoming.clear()
            for stream_id in list(self.streams):
                self._forget(stream_id)

    def _on_frame(self, kind, stream_id, value):
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if kind == streams.DATA:
            stream.pending += value
            self._write_local(stream_id)
        elif kind == streams.CREDIT:
            stream.credit += value
            self._settle(stream_id)
        elif kind == streams.CLOSE:
            stream.host_closed = True
            self._write_local(stream_id)

    # --- local ends --------------------------------------------------------

    def _on_local(self, stream_id):
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        self._write_local(stream_id)
        if stream_id not in self.streams or stream.credit <= 0 or stream.local_closed:
            return
        try:
            data = stream.local.recv(min(stream.credit, streams.MAX_DATA))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            stream.credit -= len(data)
            self._send(streams.frame(streams.DATA, stream_id, data))
        else:
            stream.local_closed = True
            self._send(streams.frame(streams.CLOSE, stream_id))
        self._settle(stream_id)

    def _write_local(self, stream_id):
        stream = self.streams[stream_id]
        if stream.pending:
            try:
                written = stream.local.send(stream.pending)
            except BlockingIOError:
                written = 0
            except OSError:
                self._abort(stream_id)
                return
            if written:
                del stream.pending[:written]
                self._send(streams.frame(streams.CREDIT, stream_id, length=written))
        if stream.host_closed and not stream.pending and not stream.shut:
            stream.shut = True
            try:
                stream.local.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self._settle(stream_id)

    def _settle(self, stream_id):
        """End the stream once both sides closed and all is written, else watch what can move."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if stream.local_closed and stream.shut:
            self._forget(stream_id)
            return
        readable = stream.credit > 0 and not stream.local_closed
        self.agent.rewatch(stream.local.fileno(), readable, bool(stream.pending))

    def _abort(self, stream_id):
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.local_closed:
            self._send(streams.frame(streams.CLOSE, stream_id))
        self._forget(stream_id)

    def _forget(self, stream_id):
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self.agent.unwatch(stream.local.fileno())
            stream.local.close()

    def close_all(self):
        """Drop every stream (a reset)."""
        for stream_id in list(self.streams):
            self._abort(stream_id)
