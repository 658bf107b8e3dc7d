"""Start-up cost of corral: ``import corral`` and the ``corral run`` command, against bare python3.

    python benchmarks/bench_startup.py [--runs 20]

Each row is a fresh process, timed from spawn to exit (wall clock), median
and p90 in ms, with the ratio to a bare ``/usr/bin/python3 -c 'print(1)'``
measured in the same run (these machines are shared and noisy). The
in-process ``corral run`` row (``CORRAL_DAEMON=off``) is the installed console
script, so it includes the interpreter's start, every import, argument
parsing, the isolation probe (or its cache), a cold process sandbox and its
teardown. The warm-daemon row is the same command line served by a daemon
started for this benchmark (in a directory of its own, stopped at the end):
the client's start and imports, and a run forked in the daemon's warm sandbox.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PROGRAM, bare_python, print_table, timed


def command(argv: list[str], expected: str | None = "", env: dict[str, str] | None = None) -> None:
    """Run ``argv`` to completion; exit if it fails or prints something else than ``expected`` (None: anything)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0 or expected is not None and done.stdout != expected:
        raise SystemExit(f"{argv} failed (exit {done.returncode}): {done.stdout!r} {done.stderr!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    python = sys.executable
    script = str(Path(python).parent / "corral")
    if not os.access(script, os.X_OK):
        raise SystemExit(f"no console script at {script}: install corral into this interpreter's environment")
    corral_run = [script, "run", "-c", PROGRAM]
    # warm caches: page cache, the probe's memory, and bytecode (written even where PYTHONDONTWRITEBYTECODE
    # is set for this shell, as an installed corral has it: compiling every module would be measured otherwise)
    writing = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    in_process = {**writing, "CORRAL_DAEMON": "off"}
    for argv, expected in ((corral_run, "1\n"), ([script, "--help"], None)):
        command(argv, expected, in_process)
    with tempfile.TemporaryDirectory(prefix="corral-bench-daemon-") as directory:
        daemon = {**writing, "CORRAL_DAEMON": "auto", "CORRAL_DAEMON_DIR": directory}
        command([script, "daemon", "start"], None, daemon)
        try:
            for _ in range(5):  # the daemon's shared sandbox starts with the first
                command(corral_run, "1\n", daemon)
            served = timed(lambda: command(corral_run, "1\n", daemon), args.runs)
        finally:
            command([script, "daemon", "stop"], None, daemon)

    bare = timed(bare_python, args.runs)
    rows = [
        ("bare /usr/bin/python3 -c (baseline)", bare),
        (f"{Path(python).name} -c pass (corral's interpreter)", timed(lambda: command([python, "-c", "pass"]), args.runs)),
        ("python -c 'import corral'", timed(lambda: command([python, "-c", "import corral"]), args.runs)),
        ("python -c 'import corral.cli.run'", timed(lambda: command([python, "-c", "import corral.cli.run"]),
                                                    args.runs)),
        ("corral --help", timed(lambda: command([script, "--help"], None, in_process), args.runs)),
        ("corral run -c 'print(1)' in-process", timed(lambda: command(corral_run, "1\n", in_process), args.runs)),
        ("corral run -c 'print(1)' via the warm daemon", served),
    ]
    print_table(rows, bare)


if __name__ == "__main__":
    main()
