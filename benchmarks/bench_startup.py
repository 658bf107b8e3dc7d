"""Start-up cost of corral: ``import corral`` and the ``corral run`` command, against bare python3.

    python benchmarks/bench_startup.py [--runs 20]

Each row is a fresh process, timed from spawn to exit (wall clock), median
and p90 in ms, with the ratio to a bare ``/usr/bin/python3 -c 'print(1)'``
measured in the same run (these machines are shared and noisy). The
``corral run`` row is the installed console script, so it includes the
interpreter's start, every import, argument parsing, the isolation probe (or
its cache), a cold process sandbox and its teardown.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
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
    for argv, expected in ((corral_run, "1\n"), ([script, "--help"], None)):
        command(argv, expected, writing)

    bare = timed(bare_python, args.runs)
    rows = [
        ("bare /usr/bin/python3 -c (baseline)", bare),
        (f"{Path(python).name} -c pass (corral's interpreter)", timed(lambda: command([python, "-c", "pass"]), args.runs)),
        ("python -c 'import corral'", timed(lambda: command([python, "-c", "import corral"]), args.runs)),
        ("python -c 'import corral.cli.run'", timed(lambda: command([python, "-c", "import corral.cli.run"]),
                                                    args.runs)),
        ("corral --help", timed(lambda: command([script, "--help"], None), args.runs)),
        ("corral run -c 'print(1)'", timed(lambda: command(corral_run, "1\n"), args.runs)),
    ]
    print_table(rows, bare)


if __name__ == "__main__":
    main()
