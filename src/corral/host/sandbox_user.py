"""The host uid sandboxes run as, and how to start a process as it (both levels use it)."""

from __future__ import annotations

import os
import shutil
from functools import lru_cache

#: The unprivileged host uid/gid sandboxes run as when corral runs as root.
NOBODY = (65534, 65534)


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
