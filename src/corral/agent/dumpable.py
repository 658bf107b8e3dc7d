"""The agent's memory and fds are off-limits to the code it runs.

User code runs as the same uid as the agent, so by default it could open
``/proc/1/mem`` or ``/proc/1/fd/*`` and tamper with the agent. A process that
is not "dumpable" can only be inspected with CAP_SYS_PTRACE, which nothing in
the sandbox has. The agent clears the flag on itself; every child sets it
again before running user code (fork inherits the flag, and a child must own
its own ``/proc/self`` files to raise its OOM score).
"""

from __future__ import annotations

from corral.agent.libc import libc

_PR_SET_DUMPABLE = 4


def set_dumpable(dumpable):
    """Set this process's dumpable flag; return False where prctl is unavailable."""
    try:
        return libc().prctl(_PR_SET_DUMPABLE, 1 if dumpable else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
