"""Network access and exposed ports: an allow-list, a refused host, the egress log, a port.

Nothing leaves this machine. A small HTTP server runs on the host's 127.0.0.1, and a
made-up name is mapped to it in the egress proxy's resolver (``resolve=``). Loopback
addresses are normally refused; an address the operator wrote down is trusted, on every
port, so outside of tests map names to loopback only if the whole host loopback may be reached.

Run: python examples/network.py
"""

import http.server
import threading
import time
import urllib.request

import corral
from corral import Network, PortMapping


class Hello(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a short text naming the path."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = f"hello from the host, you asked for {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the example's output readable
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]

# Runs inside the sandbox: fetch URL and say what happened.
FETCH = """
import urllib.error, urllib.request
try:
    with urllib.request.urlopen(URL, timeout=10) as response:
        print("  ", response.status, response.read().decode().strip())
except urllib.error.HTTPError as exc:
    print("  ", exc.code, "X-Corral-Egress:", exc.headers.get("X-Corral-Egress"), "-", exc.read().decode().strip())
except OSError as exc:
    print("   failed:", exc)
"""


def fetch(sandbox: corral.Sandbox, url: str) -> str:
    return sandbox.run(f"URL = {url!r}\n{FETCH}").stdout


network = Network.allow(["api.example.test"], resolve={"api.example.test": "127.0.0.1"})
with corral.Sandbox(network=network) as sandbox:
    print(f"1. an allowed name (api.example.test -> the host's 127.0.0.1:{port}):")
    print(fetch(sandbox, f"http://api.example.test:{port}/greeting"), end="")

    print("2. a name that is not on the list is refused by the proxy on the host:")
    print(fetch(sandbox, f"http://other.example.test:{port}/"), end="")

    print("3. 127.0.0.1 inside is the sandbox's own loopback (NO_PROXY), not the host's:")
    print(fetch(sandbox, f"http://127.0.0.1:{port}/"), end="")

    print("4. what the proxy saw (sandbox.network_log()):")
    for decision in sandbox.network_log():
        verdict = "allowed" if decision.allowed else "refused"
        print(f"   {verdict:7} {decision.host}:{decision.port}  ({decision.reason})")

# A port inside the sandbox, reachable from the host. This works without any network policy.
with corral.Sandbox(expose=[PortMapping(internal=8000)]) as sandbox:
    sandbox.files.write("site/index.html", "served from inside the sandbox\n")
    command = sandbox.commands.start("python3 -m http.server 8000 --bind 127.0.0.1 --directory site")
    (exposed,) = sandbox.exposed_ports
    print(f"5. sandbox port {exposed.internal} is at {exposed.url} (background pid {command.pid} inside)")
    deadline = time.monotonic() + 15
    while True:  # the server needs a moment to start listening
        try:
            with urllib.request.urlopen(exposed.url + "/index.html", timeout=5) as response:
                print("  ", response.status, response.read().decode().strip())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    print(f"6. the server's own log ({command.log_path}):")
    for line in sandbox.files.read_text(command.log_path).splitlines():
        print("  ", line)

server.shutdown()
