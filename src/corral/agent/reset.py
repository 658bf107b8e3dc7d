"""Returning a used sandbox to the state of a new one, so a pool can reuse it.

After a reset nothing of the previous run is left that the next run could
see: every process but the agent is killed (the pre-forked spare too, since
user code could have written into its memory), the writable file systems are
emptied, and System V IPC objects (which outlive their processes) are removed.
POSIX message queues cannot be created at all (the seccomp filter denies
them), and nothing else in the sandbox is writable.
"""

from __future__ import annotations

import os
import time

from corral.agent import tree
from corral.agent.files import remove_tree
from corral.agent.libc import libc

_IPC_RMID = 0
_SYSV_TABLES = (("shm", "shmctl"), ("msg", "msgctl"), ("sem", "semctl"))


def kill_everything_but(kept_pids, reap, rounds=200):
    """SIGKILL every process in the sandbox except ``kept_pids`` (the agent, the zygote); True once none is left."""
    for _ in range(rounds):
        table = tree.process_table()
        targets = [pid for pid, (_, state, _) in table.items() if pid not in kept_pids and tree.alive(pid, state)]
        if not targets:
            reap()
            return True
        for pid in targets:
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, PermissionError):  # an isolated run the zygote is killing
                pass
        reap()
        time.sleep(0.001)
    return False


def empty_directory(path, mode):
    """Remove everything inside ``path`` (whatever permissions user code set) and reset its mode.

    The directory itself is a mount's root and stays: its extended attributes are
    removed and its timestamps reset too, or they would carry data to the next user.
    """
    os.chmod(path, mode)
    for entry in os.scandir(path):
        remove_tree(entry.path)
    try:
        names = os.listxattr(path)
    except OSError:  # a file system without extended attributes
        names = []
    for name in names:
        os.removexattr(path, name)
    os.utime(path, (0, 0))


def remove_sysv_ipc():
    """Remove every System V shared memory segment, message queue and semaphore set."""
    for table, call in _SYSV_TABLES:
        try:
            with open(f"/proc/sysvipc/{table}") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            identifier = int(row.split()[1])
            function = getattr(libc(), call)
            if call == "semctl":
                function(identifier, 0, _IPC_RMID)
            else:
                function(identifier, _IPC_RMID, None)
