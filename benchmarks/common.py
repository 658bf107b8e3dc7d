"""Helpers every benchmark shares: timing, the bare-python baseline, the results table."""

from __future__ import annotations

import statistics
import subprocess
import time

import corral

PROGRAM = "print(1)"


def timed(function, runs: int, pause: float = 0.0) -> list[float]:
    """Milliseconds per call of ``function``, with an untimed pause between calls."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
        if pause:
            time.sleep(pause)
    return samples


def bare_python() -> None:
    """The baseline: a bare ``python3 -c 'print(1)'`` on the host."""
    subprocess.run(["/usr/bin/python3", "-c", PROGRAM], check=True, capture_output=True)


def checked(result: corral.ExecutionResult) -> corral.ExecutionResult:
    """``result``, or exit if the program did not print 1."""
    if result.stdout != "1\n":
        raise SystemExit(f"unexpected result: {result}")
    return result


def print_table(rows: list[tuple[str, list[float]]], baseline: list[float]) -> None:
    """Median, p90 and ratio to the baseline's median for each row."""
    reference = statistics.median(baseline)
    print(f"{'what':48} {'median ms':>10} {'p90 ms':>9} {'x bare':>8}")
    for name, samples in rows:
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else median
        print(f"{name:48} {median:10.2f} {p90:9.2f} {median / reference:8.2f}")
