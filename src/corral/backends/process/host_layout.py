"""What this host offers a process sandbox: system directories, /etc entries, the uid to run as."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from functools import lru_cache

from corral.backends.process.bwrap import ETC_ENTRIES, SandboxLayout
from corral.host.cgroups import Cgroup
from corral.host.sandbox_names import PREFIX, owner_alive
from corral.host.runtime_dir import data_dir

#: How long :func:`remove_service_dir` keeps retrying a removal that failed (out of descriptors...).
REMOVAL_RETRY_S = 30.0
#: The unprivileged host uid/gid sandboxes run as when corral runs as root.
NOBODY = (65534, 65534)
_MERGED_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def make_service_dir(name: str, credentials: tuple[int, int] | None = None) -> Path:
    """A fresh host directory only this sandbox's uid (and root) can enter.

    ``credentials``: the (uid, gid) the sandbox runs as, if not :func:`sandbox_credentials`.
    """
    root = _service_root()
    path = root / name
    path.mkdir(mode=0o700)
    credentials = credentials or sandbox_credentials()
    if credentials is not None:
        os.chown(path, *credentials)
    return path


def remove_service_dir(path: Path) -> None:
    """Remove a sandbox's service directory; if that fails, keep retrying for a while in the background.

    Removing a tree needs descriptors, and a start that failed for want of descriptors has none
    to spare at that moment; a retry a moment later, once the failed start's own descriptors are
    closed, finds them.
    """
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        threading.Thread(target=_retry_removal, args=(path,), name="corral-remove", daemon=True).start()


def _retry_removal(path: Path) -> None:
    delay, deadline = 0.05, time.monotonic() + REMOVAL_RETRY_S
    while path.exists() and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        shutil.rmtree(path, ignore_errors=True)


@lru_cache(maxsize=1)
def _service_root() -> Path:
    """The parent of every sandbox's service directory; once per process, orphans are cleaned up.

    A sandbox's name records the corral process that owns it. A sandbox whose owner is gone
    (a corral that crashed or was killed) is killed through its cgroup, and its cgroup and
    directory are removed.
    """
    root = data_dir() / "sandboxes"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    for child in root.iterdir():
        if child.name.startswith(PREFIX) and not owner_alive(child.name):
            orphan = Cgroup.existing(child.name)
            if orphan is not None:
                orphan.kill_all()
                orphan.remove()
            shutil.rmtree(child, ignore_errors=True)
    return root


def sandbox_credentials() -> tuple[int, int] | None:
    """Host (uid, gid) to start sandboxes as, or None to keep the caller's own."""
    return NOBODY if os.geteuid() == 0 else None


@lru_cache(maxsize=1)
def _setpriv() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin")


def drop_privileges(argv: list[str], credentials: tuple[int, int] | None = None,
                    groups: tuple[int, ...] = ()) -> tuple[list[str], dict]:
    """How to start ``argv`` as the sandbox user: a wrapped command line, or Popen arguments.

    util-linux's ``setpriv`` is preferred: changing uid inside Popen forces a
    full fork() of this (large) process, ~2 ms that block the event loop, where
    a plain spawn of setpriv uses vfork and blocks ~0.4 ms.
    """
    credentials = credentials or sandbox_credentials()
    if credentials is None:
        return argv, {}
    uid, gid = credentials
    setpriv = _setpriv()
    if setpriv is not None:
        group_option = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", group_option, *argv], {}
    return argv, {"user": uid, "group": gid, "extra_groups": list(groups)}


@lru_cache(maxsize=1)
def _host_dirs() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
    system_dirs = ["/usr"]
    symlinks = []
    for path in _MERGED_DIRS:
        if os.path.islink(path):
            symlinks.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            system_dirs.append(path)
    etc = tuple(entry for entry in ETC_ENTRIES if os.path.exists(f"/etc/{entry}"))
    return tuple(system_dirs), tuple(symlinks), etc


def host_layout(runtime_dir: str, agent_config: str, disk_bytes: int, shm_bytes: int, seccomp_fd: int | None,
                info_fd: int | None = None, block_fd: int | None = None,
                service_dir: str | None = None) -> SandboxLayout:
    """The sandbox layout for this host."""
    system_dirs, symlinks, etc = _host_dirs()
    return SandboxLayout(
        runtime_dir=runtime_dir,
        agent_config=agent_config,
        disk_bytes=disk_bytes,
        shm_bytes=shm_bytes,
        seccomp_fd=seccomp_fd,
        system_dirs=system_dirs,
        symlinks=symlinks,
        etc_entries=etc,
        info_fd=info_fd,
        block_fd=block_fd,
        service_dir=service_dir,
    )
