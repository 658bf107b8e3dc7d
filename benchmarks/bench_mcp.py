"""corral mcp latency: start, create_sandbox, run_code and read_file over stdio, against the direct API.

    python benchmarks/bench_mcp.py [--runs 30]

Starts ``corral mcp`` (local mode, a temporary state directory) and drives it
with the MCP SDK's own client; in the same run, the same calls through
``corral.Sandbox.create`` in process (what the tools call), because these
machines are shared and noisy. Prints medians (ms) and the ratio MCP/direct,
then the numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

from mcp import ClientSession, StdioServerParameters, stdio_client

from corral import Sandbox


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


async def _timed(call, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def over_mcp(runs: int) -> dict[str, float]:
    """Medians of the tools over stdio."""
    parameters = StdioServerParameters(command=sys.executable, args=["-m", "corral.cli", "mcp"], env=dict(os.environ))
    with open(os.devnull, "w") as quiet:
        start = time.perf_counter()
        async with stdio_client(parameters, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            started = time.perf_counter() - start
            creates = []
            for _ in range(runs):  # each killed (untimed) before the next: the cap stays far
                start = time.perf_counter()
                created = await session.call_tool("create_sandbox", {})
                creates.append(time.perf_counter() - start)
                await session.call_tool("kill_sandbox", {"sandbox_id": created.structured_content["sandbox_id"]})
            sandbox_id = (await session.call_tool("create_sandbox", {})).structured_content["sandbox_id"]
            await session.call_tool("run_code", {"sandbox_id": sandbox_id, "code": "x = 0"})
            await session.call_tool("write_file", {"sandbox_id": sandbox_id, "path": "a.txt", "content": "a" * 1000})
            run = await _timed(lambda: session.call_tool("run_code", {"sandbox_id": sandbox_id, "code": "x += 1"}),
                               runs * 3)
            read = await _timed(lambda: session.call_tool("read_file", {"sandbox_id": sandbox_id, "path": "a.txt"}),
                                runs * 3)
    return {"start": round(started * 1000, 2), "create": _median_ms(creates), "run": _median_ms(run),
            "read": _median_ms(read)}


def direct(runs: int) -> dict[str, float]:
    """Medians of the same calls through corral's hosted API in process."""
    def timed(call, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            call()
            samples.append(time.perf_counter() - start)
        return samples

    creates = []
    for _ in range(runs):
        start = time.perf_counter()
        created = Sandbox.create(timeout=600)
        creates.append(time.perf_counter() - start)
        created.kill()
    sandbox = Sandbox.create(timeout=600)
    sandbox.run("x = 0")
    sandbox.files.write("a.txt", "a" * 1000)
    run = timed(lambda: sandbox.run("x += 1"), runs * 3)
    read = timed(lambda: sandbox.files.read("a.txt"), runs * 3)
    sandbox.kill()
    return {"create": _median_ms(creates), "run": _median_ms(run), "read": _median_ms(read)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as state:
        os.environ["CORRAL_LOCAL_DIR"] = state
        mcp = asyncio.run(over_mcp(runs))
        plain = direct(runs)
    print(f"{'operation':<28}{'direct':>10}{'MCP':>10}{'ratio':>8}")
    print(f"{'start corral mcp + initialize':<28}{'':>10}{mcp['start']:>10}")
    for name in ("create", "run", "read"):
        print(f"{name:<28}{plain[name]:>10}{mcp[name]:>10}{mcp[name] / plain[name]:>8.2f}")
    print(json.dumps({"mcp": mcp, "direct": plain}))


if __name__ == "__main__":
    main()
