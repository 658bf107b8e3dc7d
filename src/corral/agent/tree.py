"""Finding and killing a run's whole process tree inside the sandbox.

The agent is PID 1 of the sandbox's PID namespace, so a process whose parent
died is re-parented to the agent. A run's tree is therefore its root, every
descendant of the root, and every orphan (parent is the agent) that started
after the run did. Killing repeats until none is left, which also wins against
a fork bomb because killed processes cannot fork and the pids limit bounds the
total.
"""

from __future__ import annotations

import os
import time
try:  # the C module: ``signal`` wraps it in enums, which cost ~1.5 ms to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Flag of kernel threads in /proc/<pid>/stat (include/linux/sched.h).
_PF_KTHREAD = 0x00200000


def process_table():
    """Map pid -> (parent pid, state letter, start time in clock ticks) for every visible user process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[6]) & _PF_KTHREAD:  # a VM guest's kernel threads: not ours to kill
            continue
        table[int(name)] = (int(fields[1]), fields[0].decode(), int(fields[19]))
    return table


def alive(pid, state):
    """True if process ``pid`` (whose leader is in ``state``) still has a live thread.

    A thread-group leader that ended with the thread-only ``exit`` shows ``Z``
    while its other threads run on: such a process must still be killed (a
    group-wide SIGKILL to its pid reaches every thread).
    """
    if state != "Z":
        return True
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
            return True
    return False


def uptime_ticks():
    """Clock ticks since boot, comparable with process start times."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLOCK_TICKS)


def tree_members(root, table, agent_pid, known_children, since_ticks):
    """Live pids belonging to the tree of ``root`` (see the module docstring)."""
    children = {}
    for pid, (ppid, _state, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    members = []
    pending = [root] if root in table else []
    for pid, (ppid, _state, start) in table.items():
        if ppid == agent_pid and pid not in known_children and start >= since_ticks:
            pending.append(pid)
    seen = set()
    while pending:
        pid = pending.pop()
        if pid in seen or pid == agent_pid:
            continue
        seen.add(pid)
        if pid in table and alive(pid, table[pid][1]):
            members.append(pid)
        pending.extend(children.get(pid, ()))
    return members


def kill_tree(root, agent_pid, known_children, since_ticks, reap, rounds=200):
    """SIGKILL the tree of ``root`` until no member is left; ``reap`` collects zombies."""
    for _ in range(rounds):
        members = tree_members(root, process_table(), agent_pid, known_children, since_ticks)
        if not members:
            reap()
            return True
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # gone, or outside our Landlock signal scope
                pass
        reap()
    return False


def exited_children():
    """``(pid, wait status)`` of each child of this process that has exited, without waiting for more."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status
