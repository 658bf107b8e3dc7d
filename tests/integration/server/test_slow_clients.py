"""Slowloris: a client that sends its request headers byte by byte is cut off at the header deadline.

Attack test: before the fix the server had no header timeout (h11 bounds their size, not their
time), so such a client held its connection as long as it kept sending.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from serverprocess import ServerProcess

pytestmark = pytest.mark.sandbox

DEADLINE_S = 1.5
#: How long the attacker keeps trying; well past the deadline.
ATTACK_S = 10.0


def _dribble(port: int, prefix: bytes = b"") -> float:
    """Send a request's headers one byte every 0.1 s; seconds until the server closed the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=ATTACK_S) as sock:
        if prefix:
            sock.sendall(prefix)
            assert b"200 OK" in sock.recv(65536)
            started = time.monotonic()
        headers = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
        sock.settimeout(0.1)
        for byte in headers:
            if time.monotonic() - started > ATTACK_S:
                break
            try:
                sock.send(bytes([byte]))
                if sock.recv(1) == b"":
                    return time.monotonic() - started
            except socket.timeout:
                continue
            except OSError:
                return time.monotonic() - started
    return float("inf")


def test_slow_headers_are_cut_off(tmp_path):
    server = ServerProcess(tmp_path, "--header-timeout", str(DEADLINE_S)).start()
    try:
        assert _dribble(server.port) < DEADLINE_S + 2.0
        # the next request of a kept-alive connection has the same deadline
        first = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        assert _dribble(server.port, prefix=first) < DEADLINE_S + 2.0
        assert httpx.get(f"{server.url}/v1/health").status_code == 200  # a normal client is served
    finally:
        server.stop()
