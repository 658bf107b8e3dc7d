"""Network policy and port forwarding against real sandboxes and servers on the host's loopback.

Test names are mapped to 127.0.0.1 in the proxy's resolver (``Network.allow(..., resolve=...)``),
so nothing leaves the machine.
"""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

import corral
from corral import Network, PortMapping

pytestmark = pytest.mark.sandbox

FETCH = """
import ssl, sys, urllib.request, urllib.error
try:
    body = urllib.request.urlopen(sys.argv[1] if len(sys.argv) > 1 else URL, timeout=10,
                                  context=ssl._create_unverified_context()).read().decode()
    print("OK", body)
except urllib.error.HTTPError as exc:
    print("HTTP", exc.code, exc.read().decode().strip())
except Exception as exc:
    print("ERR", type(exc).__name__, exc)
"""


def fetch(sandbox: corral.Sandbox, url: str) -> str:
    return sandbox.run(f"URL = {url!r}\n{FETCH}").stdout.strip()


def fetch_via_proxy(sandbox: corral.Sandbox, url: str) -> str:
    """Like fetch, but through the proxy even for names NO_PROXY would exempt (localhost)."""
    code = (
        "import urllib.request, urllib.error\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': 'http://127.0.0.1:3128'}))\n"
        f"try: print('OK', opener.open({url!r}, timeout=10).read().decode())\n"
        "except urllib.error.HTTPError as exc: print('HTTP', exc.code, exc.read().decode().strip())\n"
        "except Exception as exc: print('ERR', type(exc).__name__, exc)\n"
    )
    return sandbox.run(code, env={"NO_PROXY": "", "no_proxy": ""}).stdout.strip()


def test_allow_list_lets_listed_hosts_through_and_refuses_the_rest(http_server, https_server):
    http_server.routes["/x"] = (200, {}, b"hello over http")
    https_server.routes["/x"] = (200, {}, b"hello over https")
    network = Network.allow(["api.example.test"], resolve={"api.example.test": "127.0.0.1",
                                                           "evil.example.test": "127.0.0.1"})
    with corral.Sandbox(network=network) as sandbox:
        assert fetch(sandbox, f"http://api.example.test:{http_server.port}/x") == "OK hello over http"
        assert fetch(sandbox, f"https://api.example.test:{https_server.port}/x") == "OK hello over https"
        refused = fetch(sandbox, f"http://evil.example.test:{http_server.port}/x")
        assert refused.startswith("HTTP 403") and "not in this sandbox's allow-list" in refused
        tunnel = fetch(sandbox, f"https://evil.example.test:{https_server.port}/x")
        assert tunnel.startswith("ERR") and "403" in tunnel
        log = sandbox.network_log()
        assert [(d.host, d.allowed) for d in log] == [("api.example.test", True), ("api.example.test", True),
                                                      ("evil.example.test", False), ("evil.example.test", False)]


def test_no_network_by_default(http_server):
    http_server.routes["/x"] = (200, {}, b"reachable")
    with corral.Sandbox() as sandbox:
        result = fetch(sandbox, f"http://127.0.0.1:{http_server.port}/x")
        assert result.startswith("ERR") and "reachable" not in result
        assert sandbox.run("import os; print(os.environ.get('HTTP_PROXY'))").stdout == "None\n"
        assert sandbox.network_log() == []


def test_direct_ip_dns_tricks_and_the_hosts_own_services_are_refused(http_server):
    http_server.routes["/x"] = (200, {}, b"host service")
    port = http_server.port
    network = Network.allow(["localhost", "api.example.test"], resolve={"api.example.test": "127.0.0.1"})
    with corral.Sandbox(network=network) as sandbox:
        # an IP literal is not a listed name, through the proxy or around it
        forced = fetch_via_proxy(sandbox, f"http://127.0.0.1:{port}/x")
        assert forced.startswith("HTTP 403") and "host service" not in forced
        assert fetch(sandbox, f"http://127.0.0.1:{port}/x").startswith("ERR")
        # a listed name that DNS resolves to loopback is still refused (no SSRF into the host)
        localhost = fetch_via_proxy(sandbox, f"http://localhost:{port}/x")
        assert localhost.startswith("HTTP 403") and "loopback" in localhost
        # no DNS inside the sandbox
        dns = sandbox.run("import socket\ntry: print(socket.gethostbyname('example.com'))\n"
                          "except Exception as exc: print('ERR', exc)").stdout
        assert dns.startswith("ERR")
    with corral.Sandbox(network=Network.full()) as sandbox:
        assert fetch_via_proxy(sandbox, f"http://localhost:{port}/x").startswith("HTTP 403")
        assert fetch_via_proxy(sandbox, f"http://127.0.0.1:{port}/x").startswith("HTTP 403")


def test_redirect_to_a_host_that_is_not_listed_is_refused(http_server):
    port = http_server.port
    http_server.routes["/go"] = (302, {"Location": f"http://evil.example.test:{port}/secret"}, b"")
    http_server.routes["/secret"] = (200, {}, b"secret")
    network = Network.allow(["api.example.test"], resolve={"api.example.test": "127.0.0.1",
                                                           "evil.example.test": "127.0.0.1"})
    with corral.Sandbox(network=network) as sandbox:
        result = fetch(sandbox, f"http://api.example.test:{port}/go")
        assert result.startswith("HTTP 403") and "secret" not in result.split("refused")[0]


def test_allow_list_validation():
    with pytest.raises(ValueError, match="host name"):
        Network.allow(["http://example.com/path"])
    with pytest.raises(ValueError, match="at least one"):
        Network.allow([])
    assert Network.allow(["*.Example.COM."]).allowed == ("*.example.com",)
    with pytest.raises(corral.InvalidInputError, match="network"):
        corral.Sandbox(network="all")


def wait_for_port(url: str, seconds: float = 10.0) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_port_forwarding_http_and_tcp_echo():
    echo = (
        "import socket\n"
        "server = socket.create_server(('127.0.0.1', 9000))\n"
        "while True:\n"
        "    connection, _ = server.accept()\n"
        "    with connection:\n"
        "        while data := connection.recv(65536): connection.sendall(data)\n"
    )
    with corral.Sandbox(expose=[PortMapping(internal=8080), 9000]) as sandbox:
        sandbox.files.write("index.html", "served from inside")
        started = sandbox.commands.run("python3 -m http.server 8080 --bind 127.0.0.1", background=True)
        assert isinstance(started, corral.CommandHandle) and started.pid > 1
        sandbox.files.write("echo.py", echo)
        sandbox.commands.start("python3 echo.py")
        http_port, echo_port = sandbox.exposed_ports
        assert (http_port.internal, echo_port.internal) == (8080, 9000)
        assert http_port.url == f"http://127.0.0.1:{http_port.external}"
        assert wait_for_port(http_port.url + "/index.html") == b"served from inside"
        payload = bytes(range(256)) * 4096  # 1 MiB both ways
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", echo_port.external), timeout=10) as connection:
                    connection.sendall(payload)
                    connection.shutdown(socket.SHUT_WR)
                    received = b""
                    while chunk := connection.recv(65536):
                        received += chunk
                if received:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the echo server never answered"
            time.sleep(0.1)
        assert received == payload
        external = http_port.external
    with socket.socket() as probe:  # the host port is released at teardown (a server can listen on it again)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                probe.bind(("127.0.0.1", external))
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_port_mapping_validation_and_taken_ports():
    for bad in ({"internal": 0}, {"internal": 70000}, {"internal": 80, "external": 80}):
        with pytest.raises(ValueError):
            PortMapping(**bad)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(corral.InvalidInputError, match="already in use"):
            corral.Sandbox(expose=[PortMapping(internal=8080, external=port)]).start()


def test_only_the_agent_can_use_the_forwarding_socket(isolation_level):
    with corral.Sandbox(expose=[8080]) as sandbox:
        result = sandbox.run(
            "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/run/corral/ports.sock')\n"
            "s.sendall(b'0123456789abcdef0123456789abcdef\\n')\nprint(repr(s.recv(10)))"
        )
        if isolation_level == "microvm":  # the guest has no such socket: only the agent's streams reach it
            assert "FileNotFoundError" in result.stderr and result.stdout == ""
        else:
            assert result.stdout == "b''\n"  # a wrong token is dropped

