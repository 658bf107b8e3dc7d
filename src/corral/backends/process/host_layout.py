"""What this host offers a process sandbox: its system directories and /etc entries."""

from __future__ import annotations

import os
from functools import lru_cache

from corral.backends.process.bwrap import ETC_ENTRIES, SandboxLayout

_MERGED_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


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
