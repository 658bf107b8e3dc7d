"""Acting as the sandbox user from an agent that runs as root (the microVM guest).

In the process sandbox the agent already is the sandbox user, and this does
nothing. In a VM the agent is PID 1 and root; file operations it does for the
host switch their effective uid/gid to the user's for the duration, so that
permission checks are the user's and new files belong to the user. The agent
is single-threaded, so the switch cannot leak into other work.
"""

from __future__ import annotations

import os


class UserIdentity:
    """A context manager that makes the agent act as ``user`` = (uid, gid), or a no-op for None."""

    def __init__(self, user):
        self.user = tuple(user) if user else None
        self._depth = 0

    def __enter__(self):
        if self.user is not None and self._depth == 0:
            uid, gid = self.user
            os.setegid(gid)
            os.seteuid(uid)
        self._depth += 1
        return self

    def __exit__(self, *exc_info):
        self._depth -= 1
        if self.user is not None and self._depth == 0:
            os.seteuid(0)
            os.setegid(0)
        return False
