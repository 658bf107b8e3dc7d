"""The cgroup that holds user code, where the agent owns its kernel (a microVM guest).

In the process sandbox the host puts the whole sandbox in a cgroup and reads it.
In a VM the host cannot see the guest's cgroups, so the agent (root, PID 1) makes
one cgroup v2 group for everything user code starts, outside of which it stays
itself: the group's limits are the sandbox's memory and pids limits (the guest's
OOM killer then picks user code by construction), and its counters give each
run's CPU time and the sandbox's peak memory, reported in ``exec_done``.
"""

from __future__ import annotations

import os

from corral.agent import counters

_CONTROLLERS = "+memory +pids +cpu"


class UserCgroup:
    """One cgroup v2 group under a mounted cgroup2 root."""

    def __init__(self, path):
        self.path = path
        self.procs = os.path.join(path, "cgroup.procs")
        self.limits = {}
        root = os.path.dirname(path)
        _write(os.path.join(root, "cgroup.subtree_control"), _CONTROLLERS)
        os.makedirs(path, exist_ok=True)

    def set_limits(self, memory_bytes, pids):
        """Apply (and remember, for :meth:`recreate`) the memory and pids limits."""
        self.limits = {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": pids}
        for name, value in self.limits.items():
            _write(os.path.join(self.path, name), str(value))

    def cpu_usec(self):
        """CPU time of everything in the group so far, in microseconds."""
        return counters.field(counters.read_whole(os.path.join(self.path, "cpu.stat")), "usage_usec") or 0

    def memory_peak_bytes(self):
        """The group's memory high-water mark since it was created."""
        return int(counters.read_whole(os.path.join(self.path, "memory.peak")))

    def recreate(self):
        """A fresh group with the same limits (peak memory starts again); the group must be empty."""
        os.rmdir(self.path)
        os.mkdir(self.path)
        for name, value in self.limits.items():
            _write(os.path.join(self.path, name), str(value))


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
