"""The seccomp-bpf filter every process sandbox runs under.

A deny-list, not an allow-list: allow-lists written by hand kill real runtimes
on the first syscall nobody thought of (a peer's kills python3 on ``sysinfo``,
node on ``capget`` and ``sh`` on ``vfork``). What is denied here is the kernel
surface a sandboxed program has no business using: mounts and namespaces,
kernel modules and keyrings, tracing other processes, BPF and perf, io_uring,
clock and host settings, and terminal input injection. Denied calls fail with
EPERM (ENOSYS for ``clone3``, so libc falls back to ``clone``, whose flags a
filter can see) instead of killing the process, so programs see an ordinary
error. The filter is compiled once per host process.

Two layers (per-run isolation, see ``corral.agent.isolation``): bwrap installs
:func:`agent_filter_program` for the whole sandbox, which still lets the agent's
children make each isolated run's namespaces (``unshare``, ``mount``); every
child that runs user code then stacks :func:`filter_program` on top of it, which
denies those again and any ``clone`` that asks for a new namespace.
"""

from __future__ import annotations

import errno
import os
import tempfile
from functools import lru_cache

#: Syscalls no sandboxed program gets (EPERM). Unknown names (other kernels
#: or architectures) are skipped when the filter is built.
DENIED_SYSCALLS = (
    # file systems and namespaces
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns", "open_by_handle_at", "name_to_handle_at",
    "quotactl", "quotactl_fd", "swapon", "swapoff",
    # kernel, modules, host state
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "syslog", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "iopl", "ioperm", "vhangup", "nfsservctl", "lookup_dcookie", "uselib",
    "personality", "sysfs", "_sysctl",
    # keyrings
    "add_key", "request_key", "keyctl",
    # tracing and other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # large attack surfaces
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "lsm_set_self_attr", "mbind", "migrate_pages", "move_pages", "set_mempolicy",
    # POSIX message queues outlive their processes and cannot be listed without a mount:
    # denied so that a reset sandbox keeps nothing from an earlier run
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
)

#: Denied to user code, but allowed to the agent's children before they run any: making and
#: mounting the fresh namespaces of an isolated run.
RUN_SETUP_SYSCALLS = ("unshare", "mount")

_CLONE_NEWUSER = 0x10000000
#: clone() flags asking for a new namespace (user code gets none: its run has its own already).
_CLONE_NEW_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C


@lru_cache(maxsize=1)
def filter_program() -> bytes:
    """The user-code filter (raw ``struct sock_filter`` array), installed by every child before user code."""
    return _compile(DENIED_SYSCALLS, _CLONE_NEW_NAMESPACE_FLAGS)


@lru_cache(maxsize=1)
def agent_filter_program() -> bytes:
    """The whole sandbox's filter, for bwrap's ``--seccomp``: the user filter minus RUN_SETUP_SYSCALLS."""
    return _compile(tuple(name for name in DENIED_SYSCALLS if name not in RUN_SETUP_SYSCALLS), (_CLONE_NEWUSER,))


def _compile(denied_syscalls: tuple[str, ...], clone_flags: tuple[int, ...]) -> bytes:
    import pyseccomp as seccomp

    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in denied_syscalls:
        try:
            rules.add_rule(denied, name)
        except (RuntimeError, ValueError, OSError):
            continue
    for flag in clone_flags:
        rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rules.add_rule(denied, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as sink:
        rules.export_bpf(sink)
        sink.seek(0)
        return sink.read()


def program_fd() -> int:
    """A fresh memfd holding the sandbox-wide (agent) filter, positioned at 0, for one bwrap start."""
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    os.write(fd, agent_filter_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
