#!/usr/bin/env bash
# Install corral with its test dependencies and run the whole test suite
# (unit, integration and attack tests against real sandboxes, on every isolation level that works
# here; slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL_EXTRAS="[test]" bash scripts/install.sh
.venv/bin/corral image build     # the microVM guest, once per machine (cached by content)
.venv/bin/corral doctor --probe-kvm
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
