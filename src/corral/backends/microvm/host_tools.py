"""The host programs the guest image builder runs, and the one way it runs them.

Every step of the build is an ordinary program (``apt-get``, ``dpkg-deb``,
``tar``, ``mke2fs``, the host's Debian ``python3``). A failing step raises
:class:`~corral.errors.IsolationUnavailableError` naming the step, with the end
of the program's error output, so ``corral image build`` and a sandbox start
say what went wrong instead of a bare exit code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from corral.errors import IsolationUnavailableError

#: mke2fs and ldconfig live in sbin, which is not on a normal user's PATH.
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Python that compiles the guest's bytecode: Debian's, same version and paths as the guest's.
HOST_PYTHON = "/usr/bin/python3"
#: Programs the build needs, by name.
REQUIRED = ("apt-get", "dpkg-deb", "tar", "mke2fs", "ldconfig")
#: Heavy steps run at a lower priority: sandboxes on the same host come first.
NICE = ("nice", "-n", "10")
_STDERR_TAIL = 1500


def tool(name: str) -> str:
    """Absolute path of a required program (``IsolationUnavailableError`` if it is missing)."""
    found = shutil.which(name, path=SEARCH_PATH)
    if found is None:
        raise IsolationUnavailableError("microvm", f"building the guest image needs {name!r}, which is not installed")
    return found


def missing_tools() -> list[str]:
    """The required programs that are not installed here."""
    return [name for name in REQUIRED if shutil.which(name, path=SEARCH_PATH) is None]


def run(step: str, argv: Sequence[str], *, nice: bool = False, **kwargs: object) -> subprocess.CompletedProcess:
    """Run one build step; raise ``IsolationUnavailableError`` with its stderr tail if it fails."""
    argv = [tool(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    if nice:
        argv = [*NICE, *argv]
    env = {**os.environ, "LC_ALL": "C", "PATH": SEARCH_PATH}
    try:
        result = subprocess.run(argv, capture_output=True, env=env, check=False, **kwargs)  # type: ignore[call-overload]
    except OSError as exc:
        raise IsolationUnavailableError("microvm", f"guest image: {step}: cannot run {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        raise step_failed(step, result)
    return result


def step_failed(step: str, result: subprocess.CompletedProcess) -> IsolationUnavailableError:
    """The error for a step whose program exited non-zero."""
    output = result.stderr or result.stdout or b""
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    tail = output.strip()[-_STDERR_TAIL:] or "(no error output)"
    return IsolationUnavailableError("microvm", f"guest image: {step} failed (exit {result.returncode}): {tail}")
