"""The egress proxy's parser of a request head: the bytes a sandbox sends, up to the blank line.

Pure (no I/O) and strict, because its input is untrusted: a ``CONNECT host:port``
or an absolute ``http://`` URL, HTTP/1.0 or 1.1, a host that is a DNS name or an
IP literal, a port from 1 to 65535, no control characters anywhere. Anything
else raises :class:`BadRequest` and nothing else (``tests/unit/test_fuzz_proxy_request.py``,
``scripts/fuzz.py``).
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from corral.network import normalize_host

_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
#: RFC 9110 token characters (methods, header names).
_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_NAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_.")
_MAX_NAME = 253
_MAX_LABEL = 63


class BadRequest(Exception):
    """A request head the proxy refuses to parse; answer ``status`` with the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ProxyRequest:
    """What the sandbox asked for: a tunnel (``path`` None, CONNECT) or one plain-HTTP request."""

    method: str
    host: str
    port: int
    path: str | None
    version: str
    headers: tuple[str, ...]


def parse_head(head: bytes) -> ProxyRequest:
    """Parse a request head (request line, header lines, the blank line); raise BadRequest."""
    text = head.decode("latin-1")
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    request_line, *header_lines = text.split("\r\n")
    for line in (request_line, *header_lines):
        if any(ord(ch) < 0x20 and ch != "\t" or ord(ch) == 0x7F for ch in line):
            raise BadRequest(400, "control character in the request head")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not method or not _TOKEN.issuperset(method) or version not in _VERSIONS:
        raise BadRequest(400, "malformed request line")
    for line in header_lines:
        name, colon, _ = line.partition(":")
        if not colon or not name or not _TOKEN.issuperset(name):
            raise BadRequest(400, "malformed header line")
    if method == "CONNECT":
        host, colon, port_text = target.rpartition(":")
        if not colon:
            raise BadRequest(400, f"CONNECT needs host:port, got {target[:100]!r}")
        path = None
    else:
        try:
            url = urlsplit(target)
            hostname, port = url.hostname, url.port
        except ValueError:  # a bad IPv6 literal or port
            raise BadRequest(400, f"bad URL {target[:100]!r}") from None
        if url.scheme != "http" or not hostname:
            raise BadRequest(400, "only CONNECT and absolute http:// URLs go through this proxy")
        host, port_text = hostname, str(port or 80)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return ProxyRequest(method, _checked_host(host), _checked_port(port_text), path, version, tuple(header_lines))


def _checked_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise BadRequest(400, f"bad port {text[:20]!r}")
    return int(text)


def _checked_host(host: str) -> str:
    """The normalized host: an IP literal, or a DNS name of letters, digits, ``-``, ``_`` and dots."""
    host = normalize_host(host)
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if (not host or len(host) > _MAX_NAME or not _NAME_CHARS.issuperset(host)
            or any(not label or len(label) > _MAX_LABEL for label in labels)):
        raise BadRequest(400, f"bad host name {host[:100]!r}")
    return host
