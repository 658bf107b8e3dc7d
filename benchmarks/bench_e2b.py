"""E2B SDK round trips against corral, next to corral's own client: ``commands.run("echo hi")`` and ``run_code("1+1")``.

    python benchmarks/bench_e2b.py [--runs 30]

Starts ``corral serve`` on 127.0.0.1 (a temporary state directory), creates one
sandbox through the unmodified ``e2b-code-interpreter`` SDK and one through
corral's client (remote mode, the same server), and times the same two round
trips through each in the same run, interleaved (these machines are shared and
noisy). Prints medians (ms) and the ratio SDK / corral client, then JSON.
Needs the ``test`` extra (``e2b``, ``e2b-code-interpreter``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from e2b_code_interpreter import Sandbox as E2BSandbox

from corral.client import HostedSandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import start_server  # noqa: E402 - the server benchmark's starter, found through the path above


def clock(samples: list[float], function) -> None:
    """Append the milliseconds ``function`` took."""
    started = time.perf_counter()
    function()
    samples.append((time.perf_counter() - started) * 1000)


def measure(url: str, key: str, runs: int) -> dict[str, dict[str, list[float]]]:
    """Samples per operation, for the E2B SDK and for corral's client, interleaved."""
    os.environ.update(E2B_API_KEY=key, E2B_API_URL=url, E2B_SANDBOX_URL=url)
    e2b = E2BSandbox.create(timeout=600)
    corral = HostedSandbox.create("python", server=url, api_key=key, timeout=600)
    samples = {name: {"e2b": [], "corral": []} for name in ("commands.run", "run_code")}
    try:
        assert e2b.commands.run("echo hi").stdout == "hi\n" and e2b.run_code("1+1").text == "2"
        assert corral.commands.run("echo hi").stdout == "hi\n" and corral.run("1+1").text == "2"
        for _ in range(runs):
            clock(samples["commands.run"]["e2b"], lambda: e2b.commands.run("echo hi"))
            clock(samples["commands.run"]["corral"], lambda: corral.commands.run("echo hi"))
            clock(samples["run_code"]["e2b"], lambda: e2b.run_code("1+1"))
            clock(samples["run_code"]["corral"], lambda: corral.run("1+1"))
    finally:
        e2b.kill()
        corral.kill()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        process, url, key = start_server(Path(temporary) / "server")
        try:
            samples = measure(url, key, args.runs)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    rows = {}
    for name, by_client in samples.items():
        e2b_ms, corral_ms = (round(statistics.median(by_client[client]), 2) for client in ("e2b", "corral"))
        rows[name] = {"e2b_sdk_ms": e2b_ms, "corral_client_ms": corral_ms, "ratio": round(e2b_ms / corral_ms, 2)}
    print(f"E2B SDK vs corral client against one corral serve (loopback): medians of {args.runs}, ms")
    print(f"{'round trip':14} {'e2b SDK':>9} {'corral':>9} {'ratio':>7}")
    for name, row in rows.items():
        print(f"{name:14} {row['e2b_sdk_ms']:9.2f} {row['corral_client_ms']:9.2f} {row['ratio']:7.2f}")
    print(json.dumps({"runs": args.runs, "results": rows}))


if __name__ == "__main__":
    main()
