"""Fuzzing the egress proxy's request parser: a sandbox's bytes give a request or BadRequest.

What does parse also holds up: a host that is an IP literal or a plain DNS name, a port in range,
no control characters. Longer runs: ``scripts/fuzz.py``.
"""

from __future__ import annotations

import ipaddress
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.host.proxy_request import BadRequest, parse_head

FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME_CHARS = set(string.ascii_lowercase + string.digits + "-_.")

hosts = st.sampled_from(["example.com", "EXAMPLE.com.", "[::1]", "127.0.0.1", "[64:ff9b::a9fe:a9fe]", "a..b", "",
                         "xn--bcher-kva.example", "é.example", "a" * 300, "[::1", "host\x00", "1.2.3"])
hosts = hosts | st.text(max_size=20)
ports = st.sampled_from(["", ":80", ":0", ":65535", ":65536", ":-1", ":+80", ": 80", ":٨٠", ":99999999999999999999"])
ports = ports | st.text(max_size=6).map(lambda text: ":" + text)
methods = st.sampled_from(["GET", "CONNECT", "POST", "G ET", "", "GET\x00"]) | st.text(max_size=8)
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "", "HTTP/1.1\n"]) | st.text(max_size=10)
headers = st.lists(st.sampled_from(["Host: x", "Proxy-Connection: keep-alive", "Bad Header: y", ": empty", "X:\x7f",
                                    "X: a\nInjected: b"]) | st.text(max_size=30), max_size=5)


def check(head: bytes) -> None:
    try:
        request = parse_head(head)
    except BadRequest as exc:
        assert exc.status in (400, 431)
        return
    assert 1 <= request.port <= 65535
    try:
        ipaddress.ip_address(request.host)
    except ValueError:
        assert request.host and NAME_CHARS.issuperset(request.host) and len(request.host) <= 253
    for line in (request.method, request.path or "", request.version, *request.headers):
        assert not any(ord(ch) < 0x20 and ch != "\t" or ord(ch) == 0x7F for ch in line)


@FUZZ
@given(st.binary(max_size=1024))
def test_any_bytes(head):
    check(head)
    check(head + b"\r\n\r\n")


@FUZZ
@given(methods, st.sampled_from(["http://", "https://", "", "http:///", "ftp://"]), hosts, ports,
       st.sampled_from(["", "/", "/p?q=1", "/%00", "?x"]), versions, headers)
def test_assembled_requests(method, scheme, host, port, path, version, header_lines):
    target = f"{host}{port}" if method == "CONNECT" else f"{scheme}{host}{port}{path}"
    head = "\r\n".join([f"{method} {target} {version}", *header_lines]) + "\r\n\r\n"
    check(head.encode("utf-8", "surrogatepass"))


def test_good_requests_parse():
    tunnel = parse_head(b"CONNECT Example.COM.:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert (tunnel.method, tunnel.host, tunnel.port, tunnel.path) == ("CONNECT", "example.com", 443, None)
    plain = parse_head(b"GET http://[::1]:8080/a?b=c HTTP/1.0\r\nAccept: */*\r\n\r\n")
    assert (plain.host, plain.port, plain.path, plain.headers) == ("::1", 8080, "/a?b=c", ("Accept: */*",))
