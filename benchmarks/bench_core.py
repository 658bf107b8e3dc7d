"""Core latency and throughput of corral's process sandbox, against bare python3 in the same run.

    python benchmarks/bench_core.py [--runs 30] [--programs 200] [--callers 4] [--cpu-programs 100] [--microvm]

Prints medians (ms) and ratios to bare ``python3 -c 'print(1)'`` measured in
the same run, because these machines are shared and noisy. Rows: two floors
under a cold start (python3 and the agent inside corral's own bwrap command line),
cold one-shot (``fresh=True``: a sandbox of its own), warm one-shot (an isolated
run on a pool's long-lived sandbox), a second and later ``corral.run`` in a
process (an isolated run on the process-wide shared sandbox), session run after
the first, and throughput of short programs with concurrent callers (Pool.run,
corral.run on the shared sandbox, and cold starts), and CPU time per program
(bare against Pool.run's caller plus its sandbox), which a loaded machine
distorts less than wall time. ``--microvm`` adds the warm one-shot latency on a
microVM (TCG here: slow).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import corral
from common import PROGRAM, bare_python, checked, print_table, timed

def in_bwrap(command: list[str] | None) -> None:
    """Start corral's exact bwrap command line with ``command`` instead of the agent (None: the
    agent itself, until it says hello): the floor under a cold start."""
    from corral.backends import seccomp
    from corral.backends.process import bwrap
    from corral.backends.process.backend import _agent_config
    from corral.backends.process.host_layout import host_layout
    from corral.host.sandbox_user import drop_privileges
    from corral.host.runtime_dir import BWRAP_PATH, runtime_dir

    runtime = runtime_dir()
    fd = seccomp.program_fd()
    try:
        config = json.dumps(_agent_config(corral.SandboxSpec(), True))
        layout = host_layout(str(runtime), config, 1 << 26, 1 << 26, fd)
        argv = bwrap.bwrap_argv(str(runtime / BWRAP_PATH), layout)
        if command is not None:
            argv = argv[: argv.index(layout.python)] + command
        argv, options = drop_privileges(argv)
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,), **options)
        process.stdout.readline()
        process.stdin.close()
        process.wait()
    finally:
        os.close(fd)


def throughput(call, programs: int, callers: int) -> float:
    """Programs per second with ``callers`` concurrent callers."""
    started = time.perf_counter()
    with ThreadPoolExecutor(callers) as executor:
        list(executor.map(lambda _: call(), range(programs)))
    return programs / (time.perf_counter() - started)


def cpu_per_program(programs: int) -> None:
    """CPU time per program, one program at a time: less sensitive to a loaded machine than wall time.

    Bare: the children's CPU (getrusage). Pool.run: this process (the caller, corral's loop thread)
    plus the sandbox's whole cgroup (agent, zygote, the run, the next run's spare being prepared).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(programs):
        bare_python()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    bare = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000 / programs
    with corral.Pool(size=1) as pool:
        checked(pool.run(PROGRAM))
        time.sleep(0.05)
        cgroup = pool._async._ready._queue[0].instance.cgroup  # private: the one sandbox's cgroup
        if cgroup is None:
            print("\nCPU per program: no cgroup to measure the sandbox by")
            return
        host_before, sandbox_before = resource.getrusage(resource.RUSAGE_SELF), cgroup.usage().cpu_time_ms
        for _ in range(programs):
            checked(pool.run(PROGRAM))
        host_after, sandbox_after = resource.getrusage(resource.RUSAGE_SELF), cgroup.usage().cpu_time_ms
    host = (host_after.ru_utime + host_after.ru_stime - host_before.ru_utime - host_before.ru_stime) * 1000 / programs
    sandbox = (sandbox_after - sandbox_before) / programs
    print(f"\nCPU per program, {programs} one after another (ms):")
    print(f"{'bare python3 -c':45} {bare:10.2f}")
    print(f"{'corral Pool.run: caller process':45} {host:10.2f}")
    print(f"{'corral Pool.run: sandbox (agent, zygote, run)':45} {sandbox:10.2f}")
    print(f"{'corral Pool.run: total':45} {host + sandbox:10.2f} ({(host + sandbox) / bare:.2f}x bare)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--microvm", action="store_true", help="also measure a warm one-shot on a microVM")
    parser.add_argument("--cpu-programs", type=int, default=100, help="programs for the CPU-per-program rows")
    args = parser.parse_args()

    checked(corral.run(PROGRAM))  # warm caches: runtime dir, seccomp filter, probe
    rows: list[tuple[str, list[float]]] = []
    bare = timed(bare_python, args.runs)
    rows.append(("bare python3 -c (baseline)", bare))
    rows.append(("  floor: python3 -c in corral's bwrap", timed(lambda: in_bwrap(["/usr/bin/python3", "-c", PROGRAM]),
                                                          args.runs)))
    rows.append(("  floor: corral's agent hello in bwrap", timed(lambda: in_bwrap(None), args.runs)))
    rows.append(("cold one-shot corral.run(fresh=True)",
                 timed(lambda: checked(corral.run(PROGRAM, fresh=True)), args.runs)))
    with corral.Pool(size=4) as pool:
        hits = []
        warm = timed(lambda: hits.append(checked(pool.run(PROGRAM)).warm_pool_hit), args.runs, pause=0.02)
        rows.append((f"warm one-shot Pool.run, isolated ({sum(hits)}/{len(hits)} hits)", warm))
        checked(corral.run(PROGRAM))  # the first corral.run starts the shared sandbox
        rows.append(("second+ corral.run in a process (shared)",
                     timed(lambda: checked(corral.run(PROGRAM)), args.runs, pause=0.02)))
        with corral.Sandbox() as sandbox:
            checked(sandbox.run(PROGRAM))
            rows.append(("session Sandbox.run after the first", timed(lambda: checked(sandbox.run(PROGRAM)), args.runs)))
    if args.microvm:
        with corral.Pool(size=1, isolation="microvm") as pool:
            for _ in range(10):  # under TCG a fresh VM's first runs also translate the guest's code paths
                checked(pool.run(PROGRAM))
            # the pause lets the guest prepare the next run's spare (~0.1 s under TCG), as an idle pool would
            rows.append(("warm one-shot Pool.run on a microVM, isolated",
                         timed(lambda: checked(pool.run(PROGRAM)), max(args.runs // 3, 3), pause=0.25)))

    print_table(rows, bare)

    bare_rate = throughput(bare_python, args.programs, args.callers)
    with corral.Pool(size=args.callers) as pool:
        pooled_rate = throughput(lambda: checked(pool.run(PROGRAM)), args.programs, args.callers)
    shared_rate = throughput(lambda: checked(corral.run(PROGRAM)), args.programs, args.callers)
    cold_rate = throughput(lambda: checked(corral.run(PROGRAM, fresh=True)), args.programs, args.callers)
    print(f"\nthroughput, {args.programs} programs, {args.callers} concurrent callers (programs/s):")
    print(f"{'bare python3 -c':45} {bare_rate:10.1f}")
    print(f"{'corral Pool.run (isolated runs)':45} {pooled_rate:10.1f} ({pooled_rate / bare_rate:.2f}x bare)")
    print(f"{'corral.run (shared warm sandbox)':45} {shared_rate:10.1f} ({shared_rate / bare_rate:.2f}x bare)")
    print(f"{'corral.run(fresh=True) (cold)':45} {cold_rate:10.1f} ({cold_rate / bare_rate:.2f}x bare)")
    cpu_per_program(args.cpu_programs)


if __name__ == "__main__":
    main()
