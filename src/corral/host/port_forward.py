"""Sandbox ports on the host: a TCP listener per mapping, joined to the sandbox through its agent.

For each connection to ``host:external`` the forwarder makes up a one-time
token and asks the agent (over the protocol) to connect to the internal port
and to this forwarder's Unix socket, presenting the token. Only the agent
learns tokens, so code in the sandbox that connects to the socket itself is
dropped. Works with every network policy, including none: the traffic never
leaves the sandbox's own loopback inside.

Every connection costs the host process file descriptors from the one table all
sandboxes share, so both the forwarded connections and the connections to the
Unix socket (which any program in the sandbox can open) are capped per sandbox
(:data:`MAX_CONNECTIONS`); one beyond the cap is closed at once.
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
from corral.host.splice import splice
from corral.network import ExposedPort, PortMapping

#: How long the agent has to connect back for one forwarded connection.
RENDEZVOUS_TIMEOUT_S = 5.0
_TOKEN_BYTES = 16
#: Connections one sandbox's forwarder holds at once, counted apart for forwarded connections
#: and for connections to its Unix socket still waiting for a token (each holds a descriptor;
#: 256 leaves the host's 20000 for ~40 sandboxes attacking it at once).
MAX_CONNECTIONS = 256

OpenInSandbox = Callable[[int, str], Awaitable[None]]


class PortForwarder:
    """Exposes sandbox ports; ``open_in_sandbox(port, token)`` asks the agent to connect back."""

    def __init__(self, socket_path: Path, open_in_sandbox: OpenInSandbox):
        self.socket_path = socket_path
        self._open_in_sandbox = open_in_sandbox
        self._pending: dict[str, asyncio.Future] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._rendezvous: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self._waiting: set[asyncio.Task] = set()  # connections to the socket not matched to a token yet
        self.exposed: list[ExposedPort] = []

    async def start(self, mappings: list[PortMapping]) -> list[ExposedPort]:
        """Listen on every mapping; raise InvalidInputError for a port that is taken."""
        self._rendezvous = await asyncio.start_unix_server(self._on_rendezvous, path=str(self.socket_path))
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
        if len(self._waiting) >= MAX_CONNECTIONS:
            writer.transport.abort()  # a flood from inside the sandbox: its own connections fail, nobody else's
            return
        task = asyncio.current_task()
        self._waiting.add(task)
        try:
            line = await asyncio.wait_for(reader.readline(), RENDEZVOUS_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, ValueError, asyncio.CancelledError):
            writer.close()
            return
        finally:
            self._waiting.discard(task)
        arrived = self._pending.pop(line.strip().decode("ascii", "replace"), None)
        if arrived is None or arrived.done():
            writer.close()  # unknown token: not from the agent
            return
        arrived.set_result((reader, writer))

    async def close(self) -> None:
        """Release every host port and cut open connections."""
        for server in [*self._servers, *([self._rendezvous] if self._rendezvous else [])]:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        for task in [*self._connections, *self._waiting]:
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
