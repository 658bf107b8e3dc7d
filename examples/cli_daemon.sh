#!/usr/bin/env bash
# corral run from a shell loop, served by the warm daemon (docs/cli.md): the first call starts it,
# the next ones cost ~40 ms each instead of ~260 ms. Run: bash examples/cli_daemon.sh
set -euo pipefail
corral=${CORRAL:-.venv/bin/corral}

"$corral" daemon start                                  # or let the first `corral run` start it
for n in 1 2 3; do
    "$corral" run -c "print($n * $n)"
done
echo 'import sys; print(sys.stdin.read().upper())' > /tmp/upper.py
echo "piped through the daemon" | "$corral" run /tmp/upper.py
"$corral" run --timeout 1 -c 'import time; time.sleep(5)' || echo "exit $? (the timeout)"
"$corral" daemon status
"$corral" daemon stop
