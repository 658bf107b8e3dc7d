"""``corral.run_many`` on evaluation-style items against bare subprocesses doing the same, in the same run.

    python benchmarks/bench_batch.py [--items 100] [--tests 3] [--concurrency 4] [--repeats 3]

Items are small Python programs with tests (``--items`` x ``--tests`` test runs, about half
of the items wrong: they print n + 1 instead of n * 2 for odd n). The baseline is what people
write by hand: ``python3 -c CODE`` per test with stdin, 4 worker threads, stdout compared.
Prints the median wall time of each over ``--repeats`` rounds, runs per second, and the ratio
corral / bare (the target is <= 0.5 once pool runs are forks in a long-lived sandbox).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import corral


def make_items(count: int, tests: int) -> list[dict]:
    """Half right (n * 2), half wrong (n + 1 for odd item numbers)."""
    items = []
    for number in range(count):
        code = "n = int(input())\nprint(n * 2)" if number % 2 == 0 else "n = int(input())\nprint(n + 1)"
        items.append({"code": code, "timeout": 10,
                      "tests": [{"stdin": f"{value}\n", "expected": f"{value * 2}\n"} for value in range(2, 2 + tests)]})
    return items


def bare(items: list[dict], workers: int) -> int:
    """Accepted items, running ``python3 -c`` per test on the host with ``workers`` threads."""
    def one(item: dict) -> bool:
        outputs = [subprocess.run(["/usr/bin/python3", "-c", item["code"]], input=test["stdin"].encode(),
                                  capture_output=True, timeout=10).stdout.decode() for test in item["tests"]]
        return all(out == test["expected"] for out, test in zip(outputs, item["tests"]))

    with ThreadPoolExecutor(workers) as executor:
        return sum(executor.map(one, items))


def with_corral(items: list[dict], concurrency: int) -> int:
    """Accepted items with corral.run_many."""
    return sum(result.accepted for result in corral.run_many(items, concurrency=concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--tests", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    items = make_items(args.items, args.tests)
    runs = args.items * args.tests
    expected = (args.items + 1) // 2
    timings: dict[str, list[float]] = {"bare python3 -c, 4 workers": [], f"corral.run_many (concurrency {args.concurrency})": []}
    for _ in range(args.repeats):
        for name in timings:
            started = time.perf_counter()
            accepted = bare(items, 4) if name.startswith("bare") else with_corral(items, args.concurrency)
            timings[name].append(time.perf_counter() - started)
            if accepted != expected:
                raise SystemExit(f"{name}: {accepted} items accepted, expected {expected}")
    reference = statistics.median(timings["bare python3 -c, 4 workers"])
    print(f"{args.items} items x {args.tests} tests = {runs} runs, half the items wrong; median of {args.repeats}")
    print(f"{'what':40} {'wall s':>8} {'runs/s':>8} {'x bare':>7}")
    for name, samples in timings.items():
        median = statistics.median(samples)
        print(f"{name:40} {median:8.2f} {runs / median:8.1f} {median / reference:7.2f}")


if __name__ == "__main__":
    main()
