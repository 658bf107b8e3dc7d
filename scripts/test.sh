#!/usr/bin/env bash
# Install corral with its test dependencies and run the whole test suite
# (unit, integration and attack tests against real sandboxes; slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL_EXTRAS="[test]" bash scripts/install.sh
.venv/bin/corral doctor
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
