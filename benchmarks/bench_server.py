"""corral server latency: create (built-in and from a template), run over HTTP, pause and resume.

    python benchmarks/bench_server.py [--runs 20]

Starts ``corral serve`` on 127.0.0.1 (a temporary state directory) and measures
the same calls through the Python client in remote mode (HTTP on loopback) and
in local mode (the same service in process, no HTTP) in the same run, because
these machines are shared and noisy; then creates against a second server
started with ``--warm 2`` (sandboxes prepared ahead per template; an untimed
pause between creates lets the refill run). Prints medians (ms) and the ratio
remote/local, then the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from corral.client import HostedSandbox
from corral.hosted.database import Database
from corral.hosted.state_dir import open_state_dir
from corral.hosted.keys import KeyStore

TEMPLATE = {
    "name": "bench",
    "base": "python",
    "env": {"MODE": "bench"},
    "steps": [{"files": {f"app/module_{i}.py": f"VALUE = {i}\n" for i in range(10)}},
              {"run": "mkdir -p data && head -c 1000000 /dev/urandom > data/blob.bin"}],
}


def start_server(state: Path, *options: str) -> tuple[subprocess.Popen, str, str]:
    """``corral serve`` on a free loopback port, with one API key."""
    database = Database(open_state_dir(state).database)
    _, key = KeyStore(database).create("bench")
    database.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "corral.cli", "serve", "--port", str(port), "--data-dir",
                                str(state), "--log-level", "warning", "--max-sandboxes-per-key", "100", *options])
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return process, url, key
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("corral serve did not start")


def measure(where: dict, runs: int) -> dict[str, list[float]]:
    """Milliseconds per call for each operation, ``runs`` times."""
    samples: dict[str, list[float]] = {name: [] for name in
                                       ("create", "create_template", "run", "pause", "resume", "kill")}
    HostedSandbox.build_template(TEMPLATE, **where)

    def clock(name, function):
        started = time.perf_counter()
        value = function()
        samples[name].append((time.perf_counter() - started) * 1000)
        return value

    for index in range(runs):
        sandbox = clock("create", lambda: HostedSandbox.create(**where, timeout=600))
        sandbox.run("x = 1")
        for _ in range(5):
            clock("run", lambda: sandbox.run("x += 1"))
        sandbox.files.write("state.txt", f"run {index}")
        snapshot = clock("pause", sandbox.pause)
        resumed = clock("resume", lambda: HostedSandbox.resume(snapshot.id, **where, timeout=600))
        assert resumed.files.read("state.txt") == f"run {index}".encode()
        clock("kill", resumed.kill)
        templated = clock("create_template", lambda: HostedSandbox.create("bench", **where, timeout=600))
        templated.kill()
    return samples


def measure_warm(where: dict, runs: int, refill_pause: float = 0.5) -> dict[str, list[float]]:
    """Creates (built-in and from the template) against a server that keeps sandboxes ready."""
    samples: dict[str, list[float]] = {"create": [], "create_template": []}
    HostedSandbox.build_template(TEMPLATE, **where)
    for name, template in (("create", "python"), ("create_template", "bench")):
        HostedSandbox.create(template, **where).kill()  # the first create of a template starts its refill
        for _ in range(runs):
            time.sleep(refill_pause)
            started = time.perf_counter()
            sandbox = HostedSandbox.create(template, **where, timeout=600)
            samples[name].append((time.perf_counter() - started) * 1000)
            sandbox.kill()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        os.environ["CORRAL_LOCAL_DIR"] = str(root / "local")
        process, url, key = start_server(root / "server")
        try:
            local = measure({}, args.runs)
            remote = measure({"server": url, "api_key": key}, args.runs)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        process, url, key = start_server(root / "warm", "--warm", "2")
        try:
            warm = measure_warm({"server": url, "api_key": key}, args.runs)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    rows = {name: {"local_ms": round(statistics.median(local[name]), 2),
                   "remote_ms": round(statistics.median(remote[name]), 2)} for name in local}
    for name, row in rows.items():
        row["ratio"] = round(row["remote_ms"] / row["local_ms"], 2)
        row["remote_warm_ms"] = round(statistics.median(warm[name]), 2) if name in warm else None
    print(f"corral server benchmark: medians of {args.runs} (run: {5 * args.runs}), ms; "
          "remote = HTTP on loopback, local = same service in process")
    print(f"{'operation':18} {'local':>9} {'remote':>9} {'ratio':>7} {'remote --warm 2':>16}")
    for name, row in rows.items():
        warm_ms = f"{row['remote_warm_ms']:16.2f}" if row["remote_warm_ms"] is not None else f"{'':16}"
        print(f"{name:18} {row['local_ms']:9.2f} {row['remote_ms']:9.2f} {row['ratio']:7.2f} {warm_ms}")
    print(json.dumps({"runs": args.runs, "results": rows}))


if __name__ == "__main__":
    main()
