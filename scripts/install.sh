#!/usr/bin/env bash
# Install corral into ./.venv (plus the Debian packages sandboxes need, if missing),
# then run the main job once: `corral run -c 'print(1)'` in the process sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/python3 ] || need+=(python3)             # the interpreter inside sandboxes
command -v node >/dev/null 2>&1 || need+=(nodejs)       # javascript inside sandboxes
command -v npm >/dev/null 2>&1 || need+=(npm)           # package installs for javascript
command -v g++ >/dev/null 2>&1 || need+=(g++)           # C++ (language="cpp")
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)   # package installs for python
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)  # dropping to the sandbox uid
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # the tests' HTTPS peer
/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || need+=(python3-matplotlib)  # the tests of figures as results
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)  # the microVM level
command -v mke2fs >/dev/null 2>&1 || need+=(e2fsprogs)  # the microVM guest's root file system
compgen -G '/usr/lib/*/libseccomp.so.2' >/dev/null || compgen -G '/lib/*/libseccomp.so.2' >/dev/null || need+=(libseccomp2)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${CORRAL_EXTRAS:-}"
# an editable install leaves corral's own modules uncompiled, and with PYTHONDONTWRITEBYTECODE set they would be
# compiled again by every start (+50 ms for `corral run`); a stale .pyc is only ever ignored, never trusted
.venv/bin/python -m compileall -q src/corral >/dev/null
CORRAL_DAEMON=off .venv/bin/corral run -c 'print(1)'  # no warm daemon left behind by the install
