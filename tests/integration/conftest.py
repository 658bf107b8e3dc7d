"""Network peers for the integration tests, all on the host's loopback."""

from __future__ import annotations

import http.server
import os
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import direct_backend
from support.levels import backend_or_skip


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        status, headers, body = route(self) if callable(route) else route
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LocalServer:
    """An HTTP(S) server on 127.0.0.1 with a route table: path -> (status, headers, body) or a callable."""

    def __init__(self, tls_dir: Path | None = None):
        handler = type("Handler", (_Handler,), {"routes": {}})
        self.routes = handler.routes
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls_dir is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=api.example.test",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True,
    )
    return directory


@pytest.fixture
def https_server(tls_dir: Path) -> Iterator[LocalServer]:
    server = LocalServer(tls_dir)
    yield server
    server.close()


#: Backends registered by test fixtures only (tests/support): not isolation levels of their own here.
TEST_ONLY_BACKENDS = (direct_backend.NAME,)


def _levels() -> list[str]:
    """Every isolation level, or those named in ``CORRAL_TEST_LEVELS`` (comma-separated).

    A level that does not work here is still a parameter: its tests skip with the probe's reason.
    """
    from corral.backends import registry

    named = os.environ.get("CORRAL_TEST_LEVELS")
    if named:
        return [level.strip() for level in named.split(",") if level.strip()]
    return [name for name in registry.names() if name not in TEST_ONLY_BACKENDS]


def own_qemu_processes() -> set[int]:
    """QEMU processes of this test process's sandboxes (their directory names carry our pid)."""
    marker = f"/sb-{os.getpid()}-".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if b"qemu-system" in cmdline.split(b"\0")[0] and marker in cmdline:
                found.add(int(entry))
    return found


@pytest.fixture(autouse=True, params=_levels())
def isolation_level(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every integration test runs once per isolation level that works here (``auto`` pinned to it).

    ``@pytest.mark.levels("process")`` limits a test to the levels that have its feature. A level that
    does not work here skips with the probe's reason, except for tests marked ``direct``, whose
    sandboxes come from the test-only direct backend (tests/support/direct_backend.py).
    """
    marker = request.node.get_closest_marker("levels")
    if marker is not None and request.param not in marker.args:
        pytest.skip(f"not available with isolation={request.param!r}")
    if request.node.get_closest_marker("direct") is None:  # a direct test's sandboxes need no level of this host
        backend_or_skip(request.param)
    monkeypatch.setenv("CORRAL_ISOLATION", request.param)
    before = own_qemu_processes() if request.param == "microvm" else set()
    yield request.param
    from corral.oneshot import close_default_pools
    from corral.sync_bridge import bridge

    bridge.call(close_default_pools())  # pools made by corral.run(pool_size=...) live until closed
    if request.param == "microvm":  # every test checks that no QEMU outlives its sandboxes
        deadline = time.monotonic() + 15  # teardown runs in the background
        while own_qemu_processes() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not own_qemu_processes() - before, "QEMU processes outlived their sandboxes"
