"""microVM latencies and memory, against bare python3 on the host in the same run.

    python benchmarks/bench_microvm.py [--runs 20] [--boots 3] [--build]

Rows (medians): guest image build, cold (``--build``: rebuilds from the cached
.debs) and cached; cold boot to agent-ready; restore from the memory template to
agent-ready; pause and resume of a used VM (a continuation snapshot); warm-pool
one-shot ``print(1)``; session run after the first; and host memory (QEMU's RSS)
per idle VM. Prints the accelerator the numbers were
measured with: under TCG they are emulation numbers, not KVM numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corral
from common import PROGRAM, bare_python, checked, print_table, timed
from corral.backends import registry
from corral.backends.microvm import backend as microvm
from corral.backends.microvm.image import ensure_image
from corral.models import SandboxSpec

_CACHED_IMAGE = "import time; t = time.perf_counter(); from corral.backends.microvm.image import ensure_image; " \
                "ensure_image(); print((time.perf_counter() - t) * 1000)"


def cached_image_ms() -> float:
    """``ensure_image()`` in a fresh process, the image already built (what every first start pays)."""
    out = subprocess.run([sys.executable, "-c", _CACHED_IMAGE], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


async def start_ms(backend: microvm.MicrovmBackend, spec: SandboxSpec, cold: bool, rss: list[float],
                   warm_up: bool = False) -> float:
    """Launch to agent-ready (configured; ``warm_up``: and its first run done) for one VM, cold-booted or
    restored; records QEMU's RSS after 1 s idle."""
    image = await microvm._image()
    shape = await backend.shape_for(spec, image)
    template = None if cold else await backend.template(image, shape)
    started = time.perf_counter()
    vm = await (microvm.cold_boot(image, shape) if cold else microvm.restore(image, template))
    await microvm.configure(vm, spec)
    if warm_up:
        await microvm.warm_up(vm, spec)
    elapsed = (time.perf_counter() - started) * 1000
    await asyncio.sleep(1.0)
    rss.append((vm.rss_bytes() or 0) / 2**20)
    await vm.stop()
    return elapsed


async def pause_resume_ms(backend: microvm.MicrovmBackend, spec: SandboxSpec, directory: Path) -> tuple[float, float]:
    """Pause a used VM (RAM and devices to a file) and resume it to agent-ready; (pause ms, resume ms)."""
    vm = await backend.start(spec)
    started = time.perf_counter()
    await backend.pause(vm, directory)
    paused = time.perf_counter()
    resumed = await backend.resume(directory, spec)
    done = time.perf_counter()
    await resumed.stop()
    shutil.rmtree(directory)
    return (paused - started) * 1000, (done - paused) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--build", action="store_true", help="also time a full image rebuild")
    args = parser.parse_args()

    backend = registry.resolve("microvm")
    spec = SandboxSpec(isolation="microvm")
    rows: list[tuple[str, list[float]]] = []
    if args.build:
        started = time.perf_counter()
        ensure_image(force=True)
        rows.append(("image build (cold, .debs cached)", [(time.perf_counter() - started) * 1000]))
    ensure_image()
    rows.append(("image lookup (cached, fresh process)", [cached_image_ms() for _ in range(3)]))
    checked(corral.run(PROGRAM, isolation="microvm"))  # the accelerator probe and the template, once
    accel = asyncio.run(backend.accelerator(asyncio.run(microvm._image())))
    bare = timed(bare_python, args.runs)
    rows.insert(0, ("bare python3 -c (baseline)", bare))
    cold_rss: list[float] = []
    restore_rss: list[float] = []
    rows.append(("cold boot to agent-ready", [asyncio.run(start_ms(backend, spec, True, cold_rss))
                                               for _ in range(args.boots)]))
    rows.append(("restore from template to agent-ready", [asyncio.run(start_ms(backend, spec, False, restore_rss))
                                                           for _ in range(args.runs // 2)]))
    warmed_rss: list[float] = []
    rows.append(("  + the warm-up run (a sandbox start; pool refills)",
                 [asyncio.run(start_ms(backend, spec, False, warmed_rss, warm_up=True)) for _ in range(args.runs // 2)]))
    with tempfile.TemporaryDirectory() as scratch:
        cycles = [asyncio.run(pause_resume_ms(backend, spec, Path(scratch) / "snap")) for _ in range(args.boots)]
    rows.append(("pause a VM (RAM + devices to a file)", [pause for pause, _ in cycles]))
    rows.append(("resume a paused VM to agent-ready", [resume for _, resume in cycles]))
    with corral.Pool(size=2, isolation="microvm") as pool:
        hits = []
        # the pause lets the pool restore and warm up the next VM before the next run (no overlap)
        warm = timed(lambda: hits.append(checked(pool.run(PROGRAM)).warm_pool_hit), args.runs, pause=1.0)
        rows.append((f"warm-pool one-shot Pool.run ({sum(hits)}/{len(hits)} hits)", warm))
    with corral.Sandbox(isolation="microvm") as sandbox:
        checked(sandbox.run(PROGRAM))
        rows.append(("session Sandbox.run after the first", timed(lambda: checked(sandbox.run(PROGRAM)), args.runs)))

    print(f"accelerator: {accel.accel} ({accel.reason})\n")
    print_table(rows, bare)
    print(f"\nQEMU RSS per idle VM, 1 s after ready (MiB): cold-booted {statistics.median(cold_rss):.0f}, "
          f"restored {statistics.median(restore_rss):.0f} (guest RAM {SandboxSpec().limits.memory_mb} + "
          f"{microvm.GUEST_RESERVE_MB} MiB; a restored VM's RSS counts template pages it shares with other clones)")


if __name__ == "__main__":
    main()
