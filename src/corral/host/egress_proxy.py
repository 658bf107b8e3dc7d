"""The host side of a sandbox's only way out: an HTTP proxy that enforces its network policy.

It serves HTTP ``CONNECT`` (HTTPS and other TLS) and plain ``http://`` requests
on a Unix socket that the sandbox reaches through its agent. A request goes
out only when its host name matches the policy; the proxy resolves the name
itself (the sandbox has no DNS) and refuses private, loopback, link-local and
other non-public addresses unless the operator wrote that address down
(``Network.hosts`` or an IP literal in the allow-list). Every decision is kept
in :attr:`EgressProxy.decisions` and logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import logging
import os
import socket
import time
from pathlib import Path

from corral.host.capped_server import CappedUnixServer
from corral.host.proxy_request import BadRequest, parse_head
from corral.host.splice import splice
from corral.network import EgressDecision, Network, normalize_host

log = logging.getLogger(__name__)

_MAX_HEADER_BYTES = 64 * 1024
_HEADER_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 10.0
_MAX_DECISIONS = 1000
_ADDRESSES_TTL_S = 10
#: Connections one sandbox may have open through its proxy at once (each holds two host
#: descriptors: the sandbox's and the upstream one); more wait in the socket's backlog.
MAX_CONNECTIONS = 64
_HOP_BY_HOP = {"proxy-connection", "proxy-authorization", "connection", "keep-alive", "te", "trailer", "upgrade"}


class Refused(Exception):
    """The policy refuses this destination; the message says why."""


class EgressPolicy:
    """Which host names may be reached, and at which addresses."""

    def __init__(self, network: Network):
        self.network = network
        #: Temporary (host, port) allowances: a package index during an install.
        self.extra: collections.Counter[tuple[str, int]] = collections.Counter()

    def allow_temporarily(self, host: str, port: int) -> None:
        """Also allow ``host:port`` until the matching :meth:`revoke` (used around package installs)."""
        self.extra[(normalize_host(host), port)] += 1

    def revoke(self, host: str, port: int) -> None:
        """Undo one :meth:`allow_temporarily`."""
        key = (normalize_host(host), port)
        self.extra[key] -= 1
        if self.extra[key] <= 0:
            del self.extra[key]

    def _listed(self, host: str, port: int) -> bool:
        if (host, port) in self.extra:
            return True
        patterns = self.network.allowed
        if host in patterns:
            return True
        # a wildcard names subdomains: it never matches the text of an IP literal
        return not _is_ip(host) and any(p.startswith("*.") and host.endswith(p[1:]) for p in patterns)

    def _trusted_addresses(self, host: str, port: int) -> list[str] | None:
        mapped = dict(self.network.hosts).get(host)
        if mapped is not None:
            return [mapped]
        if _is_ip(host) and (host in self.network.allowed or (host, port) in self.extra):
            return [host]
        return None

    async def addresses(self, host: str, port: int) -> list[str]:
        """Addresses to connect to for ``host``; raise Refused if the policy forbids it."""
        host = normalize_host(host)
        if not (self.network.mode == "full" or self._listed(host, port)):
            raise Refused(f"{host}:{port} is not in this sandbox's allow-list")
        trusted = self._trusted_addresses(host, port)
        if trusted is not None:
            return trusted
        if _is_ip(host):
            candidates = [host]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:  # UnicodeError: a name the IDNA codec refuses
                raise Refused(f"{host} does not resolve: {exc}") from None
            candidates = list(dict.fromkeys(info[4][0] for info in infos))
        public = [address for address in candidates if _public(address)]
        if not public:
            raise Refused(
                f"{host} resolves only to private, loopback, link-local or this host's own addresses "
                f"({', '.join(candidates)})"
            )
        return public


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


#: IPv6 ranges whose low 32 bits are an IPv4 address the packet goes to: SIIT's IPv4-translated
#: addresses (RFC 6145), the deprecated IPv4-compatible ones, NAT64's well-known prefix (RFC 6052).
_LOW_32_IS_IPV4 = tuple(ipaddress.IPv6Network(net) for net in ("::ffff:0:0:0/96", "::/96", "64:ff9b::/96"))
#: NAT64's local-use prefix (RFC 8215): an operator's own translator, IPv4 embedded in one of
#: several layouts; never a public destination.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and leads to): ``::ffff:a.b.c.d`` (mapped),
    SIIT, IPv4-compatible, NAT64, 6to4 (``2002:AABB:CCDD::``) and Teredo (server and client)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if any(ip in network for network in _LOW_32_IS_IPV4):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def _public(address: str) -> bool:
    """True for a public unicast address that is not this host's; an IPv6 address that carries
    IPv4 addresses must also pass for every one of them."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64 or ip.is_site_local:
            return False
        if not all(_public(str(carried)) for carried in embedded_ipv4(ip)):
            return False
    return ip.is_global and not ip.is_multicast and str(ip) not in host_addresses()


def host_addresses() -> frozenset[str]:
    """This host's own addresses (public ones included): never a destination. Re-read every few seconds."""
    return _host_addresses(int(time.monotonic() // _ADDRESSES_TTL_S))


@functools.lru_cache(maxsize=1)
def _host_addresses(_epoch: int) -> frozenset[str]:
    found = set()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for previous, line in zip(lines, lines[1:]):
            if line.strip().endswith("host LOCAL") and "|--" in previous:
                found.add(previous.split("|--")[1].strip())
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    return frozenset(found)


class EgressProxy:
    """One sandbox's proxy, listening on a Unix socket."""

    def __init__(self, policy: EgressPolicy, socket_path: Path):
        self.policy = policy
        self.socket_path = socket_path
        self.decisions: collections.deque[EgressDecision] = collections.deque(maxlen=_MAX_DECISIONS)
        self._server: CappedUnixServer | None = None

    async def start(self) -> None:
        """Listen (the socket is made connectable for the sandbox's uid)."""
        self._server = CappedUnixServer(self._serve, self.socket_path, MAX_CONNECTIONS, reader_limit=_MAX_HEADER_BYTES)
        self._server.start()
        os.chmod(self.socket_path, 0o666)

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            tasks = list(self._server.tasks)
            self._server.close()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _record(self, host: str, port: int, allowed: bool, reason: str) -> None:
        self.decisions.append(EgressDecision(time=time.time(), host=host, port=port, allowed=allowed, reason=reason))
        log.info("egress %s %s:%d (%s)", "allowed" if allowed else "refused", host, port, reason)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                asyncio.CancelledError):
            pass  # the client went away, or the sandbox is being closed
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEADER_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return await _answer(writer, 431, f"request headers larger than {_MAX_HEADER_BYTES} bytes")
        try:
            request = parse_head(head)
        except BadRequest as exc:
            return await _answer(writer, exc.status, str(exc))
        host, port, path = request.host, request.port, request.path
        try:
            addresses = await self.policy.addresses(host, port)
        except Refused as exc:
            self._record(host, port, False, str(exc))
            return await _answer(writer, 403, f"corral: egress to {host}:{port} refused: {exc}")
        upstream = await _connect(addresses, port)
        if upstream is None:
            self._record(host, port, False, "connection failed")
            return await _answer(writer, 502, f"corral: cannot connect to {host}:{port}")
        self._record(host, port, True, f"matched the policy; connected to {upstream[2]}")
        up_reader, up_writer, _ = upstream
        if path is None:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            kept = [line for line in request.headers if line.split(":", 1)[0].lower() not in _HOP_BY_HOP]
            up_writer.write(f"{request.method} {path} {request.version}\r\n".encode("latin-1"))
            up_writer.write("".join(f"{line}\r\n" for line in [*kept, "Connection: close"]).encode("latin-1") + b"\r\n")
        await splice(reader, writer, up_reader, up_writer)


async def _connect(addresses: list[str], port: int):
    for address in addresses:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), _CONNECT_TIMEOUT_S)
            return reader, writer, address
        except (OSError, asyncio.TimeoutError):
            continue
    return None


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}
    body = (message + "\n").encode()
    marker = "X-Corral-Egress: refused\r\n" if status == 403 else ""
    writer.write(
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{marker}\r\n".encode() + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
