"""A real Ray cluster on this machine for the tests: a head and worker nodes, all on 127.0.0.1.

Each node is a ``ray start --block`` in a session of its own (``setsid``), so stopping it
(SIGTERM: Ray stops what it started) or killing it (SIGKILL to every process of that session:
raylet, workers, agents, and the sandboxes under them) touches only that node's processes.
Nodes advertise the ``corral_host`` resource; the GCS checks node health every 0.5 s so a
killed node is declared dead in about 2 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_BIN = Path(sys.executable).with_name("ray")
NODE_SCRIPT = Path(__file__).with_name("ray_node.py")
#: Environment of every node and of the test process (the driver).
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 as the node address (see ray_node.py)
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "4",
    "RAY_health_check_initial_delay_ms": "0",
}
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB; the default (30% of RAM) is far too much here
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """One ``ray start --block`` process and its session."""

    def __init__(self, name: str, process: subprocess.Popen, log: Path):
        self.name = name
        self.process = process
        self.log = log

    def pids(self) -> list[int]:
        """Every process of this node (its session)."""
        return session_pids(self.process.pid)

    def kill(self) -> None:
        """SIGKILL every process of the node at once (a machine that dies)."""
        for pid in self.pids():
            with _gone():
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Ray stops its processes), then SIGKILL whatever is left of the session."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.pids():
            with _gone():
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=5)


class RayCluster:
    """A head node and any number of worker nodes on 127.0.0.1, each with its own temp dir."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="crl-ray-", dir="/tmp"))  # short: Ray's socket paths must fit
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **RAY_ENV, **(extra or {})}

    def start_head(self, resources: str = '{"corral_host": 1}') -> Node:
        return self._start("head", [str(RAY_BIN), "start", "--head", f"--port={self.port}",
                                    "--node-ip-address=127.0.0.1", "--include-dashboard=false"], resources)

    def add_node(self, resources: str = '{"corral_host": 1}', env: dict[str, str] | None = None) -> Node:
        """A worker node (``env``: more environment for its processes, the sandbox hosts' included)."""
        name = f"worker{len(self.nodes)}"
        return self._start(name, [sys.executable, str(NODE_SCRIPT), "start", f"--address={self.address}",
                                  "--node-ip-address=127.0.0.1"], resources, env)

    def _start(self, name: str, command: list[str], resources: str, env: dict[str, str] | None = None) -> Node:
        log = self.root / f"{name}.log"
        command += ["--block", "--disable-usage-stats", "--num-cpus=1", f"--object-store-memory={OBJECT_STORE_BYTES}",
                    f"--resources={resources}", f"--temp-dir={self.root / name}",
                    f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                    f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env(env),
                                       start_new_session=True, cwd=self.root)
        node = Node(name, process, log)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                node.stop()
                raise RuntimeError(f"ray node {name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        return node

    def stop(self) -> None:
        """Stop every node, workers first."""
        for node in reversed(self.nodes):
            node.stop()

    def remove(self) -> None:
        """Remove the cluster's temp dirs (logs included)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Processes of this cluster still running (by session, or a raylet/gcs_server naming its temp dir)."""
        found = []
        for node in self.nodes:
            found += [f"{pid} ({node.name})" for pid in session_pids(node.process.pid)]
        for pid in _all_pids():
            cmdline = _cmdline(pid)
            if str(self.root) in cmdline and ("raylet" in cmdline or "gcs_server" in cmdline):
                found.append(f"{pid} {cmdline[:120]}")
        return found


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid``."""
    pids = []
    for pid in _all_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(pid)
    return pids


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class _gone:
    """Ignore a process that already exited."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, traceback) -> bool:
        return kind is ProcessLookupError


def node_id_of(node: Node) -> str:
    """The Ray node id of ``node`` (its raylet socket lives under the node's own temp dir)."""
    import ray

    marker = f"/{node.name}/"
    for entry in ray.nodes():
        if entry["Alive"] and marker in entry["RayletSocketName"]:
            return entry["NodeID"]
    raise LookupError(f"node {node.name} is not alive in the cluster")
