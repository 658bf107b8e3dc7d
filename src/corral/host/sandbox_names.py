"""Names of a sandbox's host resources (its cgroup and service directory), recording their owner.

A name is ``sb-<pid>-<start time>-<random>``: the corral process that created the
sandbox (its start time makes the pair unique across pid reuse). Clean-up uses
it to tell what a crashed or killed corral left behind from the sandboxes of a
live one, including sandboxes that are still starting and have empty cgroups.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache

PREFIX = "sb-"


def _identity(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] == b"Z":  # exited, not yet reaped (by an init that may never do it): gone
        return None
    return f"{pid}-{fields[19].decode()}"


@lru_cache(maxsize=1)
def _own_identity(pid: int) -> str:
    return _identity(pid) or f"{pid}-0"


def new_name() -> str:
    """A fresh name owned by this process."""
    return f"{PREFIX}{_own_identity(os.getpid())}-{uuid.uuid4().hex[:8]}"


def owner_alive(name: str) -> bool:
    """True when the process that created ``name`` still runs (False for names of another form)."""
    parts = name[len(PREFIX):].split("-") if name.startswith(PREFIX) else []
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    return _identity(int(parts[0])) == f"{parts[0]}-{parts[1]}"
