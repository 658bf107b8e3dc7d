"""Each sandbox's private host directory, where the Unix sockets of its host services live."""

from __future__ import annotations

import os
import shutil
import threading
import time
from functools import lru_cache
from pathlib import Path

from corral.host.cgroups import Cgroup
from corral.host.data_dir import data_dir
from corral.host.sandbox_names import PREFIX, owner_alive
from corral.host.sandbox_user import sandbox_credentials

#: How long :func:`remove_service_dir` keeps retrying a removal that failed (out of descriptors...).
REMOVAL_RETRY_S = 30.0


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
