"""Helpers of the server tests: a real ``corral serve`` child process, and host process lookups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from corral.hosted.database import Database
from corral.hosted.keys import KeyStore
from corral.hosted.state_dir import open_state_dir

#: How long a server may take to answer its first health check.
START_DEADLINE_S = 30.0
#: ``corral`` with the test-only direct backend registered (tests/support/direct_serve.py).
DIRECT_SERVE = Path(__file__).resolve().parents[2] / "support" / "direct_serve.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``corral serve`` in a child process, with one API key; restartable on the same state."""

    def __init__(self, data_dir: Path, *options: str, key: str | None = None, direct: bool = False):
        """``key``: an API key already in ``data_dir``'s database (else one is created).

        ``direct``: the server's sandboxes run on the test-only direct backend (the agent as a plain
        host process, NO isolation; see tests/support/direct_backend.py), for tests of the service
        itself rather than of isolation.
        """
        self.data_dir = data_dir
        self.options = options
        self.direct = direct
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = key if key is not None else self.new_key()
        self.process: subprocess.Popen | None = None
        self.log = data_dir / "server.log"

    def new_key(self, scope: str | None = None) -> str:
        """A new API key (``scope``: limited to one front-end) in this server's database."""
        database = Database(open_state_dir(self.data_dir).database)
        try:
            return KeyStore(database).create("tests", scope)[1]
        finally:
            database.close()

    def start(self) -> ServerProcess:
        """Start the server and wait until it answers."""
        command = [str(DIRECT_SERVE)] if self.direct else ["-m", "corral.cli"]
        env = {**os.environ, "CORRAL_ISOLATION": "direct"} if self.direct else os.environ.copy()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *command, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
                 "--log-level", "warning", "--reap-interval", "0.2", *self.options],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"corral serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"corral serve did not answer within {START_DEADLINE_S} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: graceful; SIGKILL: a crash) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self.process = None

    def restart(self, sig: int = signal.SIGTERM) -> ServerProcess:
        """Stop, then start again on the same state directory and port."""
        self.stop(sig)
        return self.start()

    def client(self, credential: str | None = None) -> httpx.Client:
        """An HTTP client with ``credential`` (the API key by default) as bearer."""
        headers = {"Authorization": f"Bearer {credential or self.key}"} if credential != "" else {}
        return httpx.Client(base_url=f"{self.url}/v1", headers=headers, timeout=60)


def host_processes_with(marker: str) -> list[int]:
    """Pids of host processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]
