"""What a sandbox may reach: the network policy and the ports it exposes.

Sandboxes start with no network at all (their own network namespace, loopback
only). The controlled ways out are all enforced outside the sandbox:

- ``Network.allow([...])``: HTTP and HTTPS (CONNECT) through a host-side proxy
  that allows a request only when the host name matches the list, resolves the
  name itself, and refuses private, loopback and link-local addresses.
- ``Network.full()``: any host name, still never the host's own or private
  addresses.
- ``PortMapping``: a TCP port inside the sandbox, reachable on the host.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HOST_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def normalize_host(host: str) -> str:
    """Lower-case host name without a trailing dot; IP literals in canonical form."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def host_pattern_problem(pattern: str) -> str | None:
    """Say why ``pattern`` is not a host name, ``*.``-wildcard or IP literal; None if it is."""
    if not isinstance(pattern, str) or not pattern:
        return "host patterns must be non-empty strings"
    host = normalize_host(pattern)
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[2:] if host.startswith("*.") else host
    labels = name.split(".")
    if len(name) > 253 or any(
        not label or len(label) > 63 or not _HOST_LABEL_CHARS.issuperset(label) or label[0] == "-" or label[-1] == "-"
        for label in labels
    ):
        return f"{pattern!r} is not a host name (or '*.' followed by one)"
    return None


class Network(BaseModel):
    """A sandbox's way out. Build it with :meth:`none`, :meth:`allow` or :meth:`full`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    mode: Literal["none", "allow", "full"] = "none"
    #: Host names (``api.example.com``), wildcards (``*.example.com``: subdomains only) or IP literals.
    allowed: tuple[str, ...] = ()
    #: Names the proxy resolves to these addresses instead of asking DNS. Addresses given
    #: here (or as IP literals in ``allowed``) are trusted even when private or loopback.
    hosts: tuple[tuple[str, str], ...] = ()

    @field_validator("allowed", mode="before")
    @classmethod
    def _patterns(cls, value: object) -> tuple[str, ...]:
        patterns = (value,) if isinstance(value, str) else tuple(value or ())
        for pattern in patterns:
            problem = host_pattern_problem(pattern)
            if problem:
                raise ValueError(problem)
        return tuple(sorted({normalize_host(pattern) for pattern in patterns}))

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> tuple[tuple[str, str], ...]:
        items = value.items() if isinstance(value, dict) else (value or ())
        mapping = []
        for name, address in items:
            if host_pattern_problem(name) or name.startswith("*"):
                raise ValueError(f"hosts: {name!r} is not a host name")
            try:
                mapping.append((normalize_host(name), str(ipaddress.ip_address(address))))
            except ValueError:
                raise ValueError(f"hosts: {address!r} is not an IP address") from None
        return tuple(sorted(mapping))

    @model_validator(mode="after")
    def _consistent(self) -> Network:
        if self.mode == "allow" and not self.allowed:
            raise ValueError("Network.allow needs at least one host name")
        if self.mode != "allow" and self.allowed:
            raise ValueError("only Network.allow takes a list of host names")
        return self

    @classmethod
    def none(cls) -> Network:
        """No network at all (the default)."""
        return cls(mode="none")

    @classmethod
    def allow(cls, hosts: list[str] | tuple[str, ...], *, resolve: dict[str, str] | None = None) -> Network:
        """HTTP(S) to these host names only, through the host's proxy."""
        return cls(mode="allow", allowed=tuple(hosts), hosts=resolve or {})

    @classmethod
    def full(cls, *, resolve: dict[str, str] | None = None) -> Network:
        """HTTP(S) to any public address (never private, loopback or link-local ones)."""
        return cls(mode="full", hosts=resolve or {})

    @property
    def enabled(self) -> bool:
        """True when the sandbox gets the egress proxy."""
        return self.mode != "none"


class PortMapping(BaseModel):
    """Expose TCP port ``internal`` of the sandbox on ``host``:``external`` (None: any free port)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    internal: int = Field(ge=1, le=65535)
    external: int | None = Field(default=None, ge=1024, le=65535)
    protocol: Literal["tcp"] = "tcp"
    host: str = "127.0.0.1"

    @field_validator("host")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"host must be an IP address to listen on, got {value!r}") from None


class ExposedPort(BaseModel):
    """A sandbox port reachable from the host."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    internal: int
    external: int
    host: str
    url: str


class EgressDecision(BaseModel):
    """One connection the egress proxy allowed or refused."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    time: float
    host: str
    port: int
    allowed: bool
    reason: str
