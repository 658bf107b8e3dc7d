"""Host services attached to one sandbox after hand-out: its egress proxy and forwarded ports.

They are attached when a user starts a sandbox, not when a pool starts it, so
a warm pool serves requests for network access and ports like any other, and
they are closed before the sandbox is torn down or recycled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from corral.channel import Channel
from corral.agent_errors import agent_error
from corral.errors import ProtocolError, SandboxCrashedError
from corral.host.egress_proxy import EgressPolicy, EgressProxy
from corral.host.port_forward import PortForwarder
from corral.network import EgressDecision, ExposedPort, Network, PortMapping
from corral.protocol import Ack, EgressRequest, Error, PortConnectRequest, wire

_PROXY_URL = f"http://127.0.0.1:{wire.EGRESS_RELAY_PORT}"
#: What programs inside read to find the proxy (pip, curl, urllib, npm...).
PROXY_ENV = {
    "HTTP_PROXY": _PROXY_URL,
    "HTTPS_PROXY": _PROXY_URL,
    "http_proxy": _PROXY_URL,
    "https_proxy": _PROXY_URL,
    "NO_PROXY": "localhost,127.0.0.1,::1",
    "no_proxy": "localhost,127.0.0.1,::1",
    "npm_config_proxy": _PROXY_URL,
    "npm_config_https_proxy": _PROXY_URL,
}


class SandboxServices:
    """The network services of one started sandbox."""

    def __init__(self, channel: Channel, network: Network):
        self.channel = channel
        self.network = network
        self.policy = EgressPolicy(network)
        self.proxy: EgressProxy | None = None
        self.forwarder: PortForwarder | None = None
        self._relay_users = 0
        self._log: list[EgressDecision] | None = None  # the proxy's log, kept after close
        self._install_lock = asyncio.Lock()

    @property
    def decisions(self) -> list[EgressDecision]:
        """Every connection the egress proxy allowed or refused, oldest first."""
        if self.proxy is not None:
            return list(self.proxy.decisions)
        return list(self._log or [])

    def run_env(self) -> dict[str, str]:
        """Environment every run gets (the proxy settings when the sandbox has network)."""
        return dict(PROXY_ENV) if self.network.enabled else {}

    async def start(self, expose: list[PortMapping]) -> list[ExposedPort]:
        """Open the egress path (if the policy has one) and the exposed ports."""
        if self.network.enabled:
            await self._relay(+1)
        if not expose:
            return []
        self.forwarder = PortForwarder(self.channel.instance.service_dir / wire.PORTS_SOCKET, self._open_port)
        return await self.forwarder.start(expose)

    @contextlib.asynccontextmanager
    async def temporary_egress(self, hosts: list[tuple[str, int]]) -> AsyncIterator[dict[str, str]]:
        """Let the sandbox reach ``hosts`` (host, port) too, for the duration; yields the proxy env.

        Installs are serialized, so one cannot end another's allowance.
        """
        async with self._install_lock:
            async with self._temporary(hosts) as env:
                yield env

    @contextlib.asynccontextmanager
    async def _temporary(self, hosts: list[tuple[str, int]]) -> AsyncIterator[dict[str, str]]:
        allowed: list[tuple[str, int]] = []
        relayed = False
        try:
            for host, port in hosts:
                self.policy.allow_temporarily(host, port)
                allowed.append((host, port))
            await self._relay(+1)
            relayed = True
            # everything through the proxy, loopback included: an index given as 127.0.0.1 is on
            # the host's loopback, which the sandbox can reach only through the proxy
            yield {**PROXY_ENV, "NO_PROXY": "", "no_proxy": ""}
        finally:
            # revoked whatever happened, so a failed install cannot leave the index reachable
            for host, port in allowed:
                self.policy.revoke(host, port)
            if relayed:
                await self._relay(-1)

    async def _relay(self, delta: int) -> None:
        """Count users of the in-sandbox relay; the count changes only once the agent agreed."""
        if delta > 0:
            if self._relay_users == 0:
                if self.proxy is None:
                    self.proxy = EgressProxy(self.policy, self.channel.instance.service_dir / wire.EGRESS_SOCKET)
                    await self.proxy.start()
                await self._ack(lambda request_id: EgressRequest(id=request_id, enable=True))
            self._relay_users += 1
        else:
            self._relay_users -= 1
            if self._relay_users == 0:
                await self._ack(lambda request_id: EgressRequest(id=request_id, enable=False))

    async def _open_port(self, port: int, token: str) -> None:
        await self._ack(lambda request_id: PortConnectRequest(id=request_id, port=port, token=token))

    async def _ack(self, build) -> None:
        event = await self.channel.call(build)
        if isinstance(event, Error):  # ``busy``: the sandbox's own program holds the relay's port
            raise agent_error(event, "network")
        if not isinstance(event, Ack):
            raise ProtocolError(f"expected an ack, got {event.type}")

    async def close(self) -> None:
        """Release host ports and stop the proxy."""
        if self.proxy is not None:
            self._log = list(self.proxy.decisions)
        for service in (self.forwarder, self.proxy):
            if service is not None:
                with contextlib.suppress(Exception):
                    await service.close()
        self.forwarder = self.proxy = None
        if self._relay_users and not self.channel.broken:
            self._relay_users = 0
            with contextlib.suppress(ProtocolError, SandboxCrashedError, Exception):
                await self._ack(lambda request_id: EgressRequest(id=request_id, enable=False))
