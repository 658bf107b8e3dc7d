"""Sandbox ports on the host: a TCP listener per mapping, joined to the sandbox through its agent.

For each connection to ``host:external`` the forwarder makes up a one-time
token and asks the agent (over the protocol) to connect to the internal port
and to this forwarder's Unix socket, presenting the token. Only the agent
learns tokens, so code in the sandbox that connects to the socket itself is
dropped. Works with every network policy, including none: the traffic never
leaves the sandbox's own loopback inside.

Every connection costs the host process descriptors from the one table all
sandboxes share, so both are capped per sandbox (:data:`MAX_CONNECTIONS`): the
Unix socket, which any program in the sandbox can connect to, accepts no more
while that many wait for their token (the rest wait in its backlog), and a
forwarded connection beyond the cap is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from corral.errors import InvalidInputError
from corral.host.capped_server import CappedUnixServer
from corral.host.splice import splice
from corral.network import ExposedPort, PortMapping

#: How long the agent has to connect back for one forwarded connection.
RENDEZVOUS_TIMEOUT_S = 5.0
_TOKEN_BYTES = 16
#: Connections one sandbox's forwarder holds at once, counted apart for forwarded connections
#: and for connections to its Unix socket waiting for a token (each holds a host descriptor).
MAX_CONNECTIONS = 256

OpenInSandbox = Callable[[int, str], Awaitable[None]]


class PortForwarder:
    """Exposes sandbox ports; ``open_in_sandbox(port, token)`` asks the agent to connect back."""

    def __init__(self, socket_path: Path, open_in_sandbox: OpenInSandbox):
        self.socket_path = socket_path
        self._open_in_sandbox = open_in_sandbox
        self._pending: dict[str, asyncio.Future] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._rendezvous: CappedUnixServer | None = None
        self._connections: set[asyncio.Task] = set()
        self.exposed: list[ExposedPort] = []

    async def start(self, mappings: list[PortMapping]) -> list[ExposedPort]:
        """Listen on every mapping; raise InvalidInputError for a port that is taken."""
        self._rendezvous = CappedUnixServer(self._on_rendezvous, self.socket_path, MAX_CONNECTIONS)
        self._rendezvous.start()
        os.chmod(self.socket_path, 0o666)
        try:
            for mapping in mappings:
                self.exposed.append(await self._listen(mapping))
        except BaseException:
            await self.close()
            raise
        return self.exposed

    async def _listen(self, mapping: PortMapping) -> ExposedPort:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(mapping.internal, reader, writer)

        try:
            server = await asyncio.start_server(serve, mapping.host, mapping.external or 0)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidInputError(f"port {mapping.external} on {mapping.host} is already in use") from None
            raise InvalidInputError(f"cannot listen on {mapping.host}:{mapping.external}: {exc.strerror}") from None
        self._servers.append(server)
        external = server.sockets[0].getsockname()[1]
        host = f"[{mapping.host}]" if ":" in mapping.host else mapping.host
        return ExposedPort(internal=mapping.internal, external=external, host=mapping.host, url=f"http://{host}:{external}")

    async def _forward(self, internal: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        self._connections.add(task)
        token = secrets.token_hex(_TOKEN_BYTES)
        arrived: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[token] = arrived
        try:
            await self._open_in_sandbox(internal, token)
            inner_reader, inner_writer = await asyncio.wait_for(arrived, RENDEZVOUS_TIMEOUT_S)
            await splice(reader, writer, inner_reader, inner_writer)
        except (Exception, asyncio.CancelledError):  # nothing listens inside, the sandbox is gone or closing
            writer.close()
        finally:
            self._pending.pop(token, None)
            self._connections.discard(task)

    async def _on_rendezvous(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), RENDEZVOUS_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, ValueError, asyncio.CancelledError):
            writer.close()
            return
        arrived = self._pending.pop(line.strip().decode("ascii", "replace"), None)
        if arrived is None or arrived.done():
            writer.close()  # unknown token: not from the agent
            return
        arrived.set_result((reader, writer))

    async def close(self) -> None:
        """Release every host port and cut open connections."""
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        if self._rendezvous is not None:
            self._rendezvous.close()
        for task in list(self._connections):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
