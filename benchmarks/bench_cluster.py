"""corral.cluster against a local corral pool, in the same run: the cost of the cluster path.

    python benchmarks/bench_cluster.py [--runs 100] [--concurrency 8] [--per-node 4]

Starts a Ray cluster on 127.0.0.1 with the tests' harness (tests/integration/cluster/ray_cluster.py),
head node first, and measures ``print(1)`` runs:

- sequential: the median latency of one run (local ``corral.AsyncPool.run`` vs ``cc.AsyncPool.run``);
- concurrent: runs per second with ``--concurrency`` runs in flight, for the local pool, the cluster
  pool on 1 node, then on 2 nodes (a second node joins the running pool).

Both nodes are on this machine and share its cores, so 2 nodes cannot be faster than the cores allow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "cluster"))
from ray_cluster import RAY_ENV, RayCluster  # noqa: E402

os.environ.update(RAY_ENV)  # before Ray is imported (the driver keeps 127.0.0.1)

import ray  # noqa: E402

import corral  # noqa: E402
import corral.cluster as cc  # noqa: E402

PROGRAM = "print(1)"


async def sequential(run, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await run(PROGRAM)
        samples.append((time.perf_counter() - started) * 1000)
        assert result.stdout == "1\n", result
    return samples


async def throughput(run, runs: int, concurrency: int) -> float:
    queue = iter(range(runs))

    async def worker() -> None:
        for _ in queue:
            assert (await run(PROGRAM)).stdout == "1\n"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return runs / (time.perf_counter() - started)


async def main(args: argparse.Namespace, cluster: RayCluster) -> None:
    rows = []
    async with corral.AsyncPool(args.per_node, isolation="process") as local:
        await sequential(local.run, 5)
        local_seq = await sequential(local.run, args.runs)
        local_rps = await throughput(local.run, args.runs, args.concurrency)
    rows.append(("local corral.AsyncPool", local_seq, local_rps))
    async with cc.AsyncPool(cluster.address, per_node=args.per_node, isolation="process") as pool:
        await sequential(pool.run, 5)
        one_seq = await sequential(pool.run, args.runs)
        one_rps = await throughput(pool.run, args.runs, args.concurrency)
        rows.append(("cc.AsyncPool, 1 node", one_seq, one_rps))
        await asyncio.to_thread(cluster.add_node)
        while len(pool.nodes()) < 2:
            await asyncio.sleep(0.1)
        await throughput(pool.run, 10, args.concurrency)  # the new node's warm-up
        two_seq = await sequential(pool.run, args.runs)
        two_rps = await throughput(pool.run, args.runs, args.concurrency)
        rows.append(("cc.AsyncPool, 2 nodes", two_seq, two_rps))
    base = statistics.median(local_seq)
    print(f"{'what':28} {'seq median ms':>14} {'seq p90 ms':>11} {'x local':>8} "
          f"{f'runs/s @{args.concurrency}':>12}")
    for name, samples, rps in rows:
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"{name:28} {median:14.2f} {p90:11.2f} {median / base:8.2f} {rps:12.1f}")
    print(f"cluster path overhead per run (1 node, median): {statistics.median(one_seq) - base:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--per-node", type=int, default=4)
    arguments = parser.parse_args()
    local_cluster = RayCluster()
    try:
        local_cluster.start_head()
        ray.init(address=local_cluster.address, log_to_driver=False, configure_logging=False)
        asyncio.run(main(arguments, local_cluster))
    finally:
        ray.shutdown()
        local_cluster.stop()
        if local_cluster.leftovers():
            print("left running:", local_cluster.leftovers())
        else:
            local_cluster.remove()
