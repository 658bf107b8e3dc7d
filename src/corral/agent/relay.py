"""Byte relays the agent runs for the network features.

- :class:`EgressRelay`: listens on 127.0.0.1:<port> inside the sandbox (what
  ``HTTP(S)_PROXY`` points at) and joins every connection to the host's egress
  proxy socket. The sandbox has no other route out.
- :func:`connect_port`: joins a connection to a port inside the sandbox with
  the host's port-forwarding socket, presenting the host's one-time token.

Both use :class:`Pair`, a non-blocking two-way copy driven by the agent loop.
"""

from __future__ import annotations

import os
import socket

from corral.protocol import wire

#: Bytes buffered per direction before reading from the other side pauses.
_BUFFER_LIMIT = 256 * 1024
_CONNECT_TIMEOUT_S = 2.0


class Pair:
    """Copies bytes both ways between two connected sockets, then closes both."""

    def __init__(self, agent, first, second):
        self.agent = agent
        self.sockets = {first.fileno(): first, second.fileno(): second}
        self.other = {first.fileno(): second.fileno(), second.fileno(): first.fileno()}
        self.pending = {fd: bytearray() for fd in self.sockets}  # data waiting to be written TO fd
        self.eof = {fd: False for fd in self.sockets}  # fd has nothing more to say
        self.shut = {fd: False for fd in self.sockets}
        self.closed = False
        for fd, sock in self.sockets.items():
            sock.setblocking(False)
            agent.watch(fd, self.on_event)
        agent.pairs.add(self)

    def on_event(self):
        """Move whatever can move now, in both directions."""
        for fd in self.sockets:
            if self.closed:
                return
            self._flush(fd)
            self._read(fd)
        if self.closed:
            return
        if all(self.eof.values()) and not any(self.pending.values()):
            self.close()
            return
        for fd in self.sockets:
            readable = not self.eof[fd] and len(self.pending[self.other[fd]]) < _BUFFER_LIMIT
            self.agent.rewatch(fd, readable, bool(self.pending[fd]))

    def _read(self, fd):
        target = self.other[fd]
        if self.eof[fd] or len(self.pending[target]) >= _BUFFER_LIMIT:
            return
        try:
            data = self.sockets[fd].recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.pending[target] += data
            self._flush(target)
        else:
            self.eof[fd] = True
            self._flush(target)

    def _flush(self, fd):
        buffer = self.pending[fd]
        if buffer:
            try:
                sent = self.sockets[fd].send(buffer)
                del buffer[:sent]
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
        if not buffer and self.eof[self.other[fd]] and not self.shut[fd]:
            self.shut[fd] = True
            try:
                self.sockets[fd].shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        """Close both sockets (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for fd, sock in self.sockets.items():
            self.agent.unwatch(fd)
            sock.close()
        self.agent.pairs.discard(self)


def connect_host(agent, name):
    """A socket connected to the host's service socket ``name``: directly where the sandbox sees
    the host's service directory (the process sandbox), else through the host streams (a VM)."""
    if agent.host_streams is not None:
        return agent.host_streams.open(name)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(_CONNECT_TIMEOUT_S)
    try:
        connection.connect(os.path.join(wire.SERVICE_DIR, name))
    except OSError:
        connection.close()
        raise
    return connection


class EgressRelay:
    """127.0.0.1:<port> inside the sandbox, joined to the host's egress proxy."""

    def __init__(self, agent, port):
        self.agent = agent
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.listener.setblocking(False)
        agent.watch(self.listener.fileno(), self.on_accept)

    def on_accept(self):
        """Join each waiting client to a fresh connection to the proxy."""
        while True:
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, OSError):
                return
            try:
                upstream = connect_host(self.agent, wire.EGRESS_SOCKET)
            except OSError:
                client.close()
                continue
            Pair(self.agent, client, upstream)

    def close(self):
        """Stop accepting (open connections finish on their own)."""
        self.agent.unwatch(self.listener.fileno())
        self.listener.close()


def connect_port(agent, port, token):
    """Join 127.0.0.1:<port> inside the sandbox with the host's forwarding socket."""
    inner = socket.create_connection(("127.0.0.1", port), timeout=_CONNECT_TIMEOUT_S)
    try:
        outer = connect_host(agent, wire.PORTS_SOCKET)
        outer.sendall(token.encode("ascii") + b"\n")
    except OSError:
        inner.close()
        raise
    Pair(agent, inner, outer)
