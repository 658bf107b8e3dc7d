"""The seccomp-bpf filter every process sandbox runs under.

A deny-list, not an allow-list: allow-lists written by hand kill real runtimes
on the first syscall nobody thought of (a peer's kills python3 on ``sysinfo``,
node on ``capget`` and ``sh`` on ``vfork``). What is denied here is the kernel
surface a sandboxed program has no business using: mounts and namespaces,
kernel modules and keyrings, tracing other processes, BPF and perf, io_uring,
clock and host settings, and terminal input injection. Denied calls fail with
EPERM (ENOSYS for ``clone3``, so libc falls back to ``clone``, whose flags a
filter can see) instead of killing the process, so programs see an ordinary
error. The filter is compiled once per host process and handed to bwrap.
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

_CLONE_NEWUSER = 0x10000000
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C


@lru_cache(maxsize=1)
def filter_program() -> bytes:
    """The compiled BPF program (raw ``struct sock_filter`` array) for bwrap's ``--seccomp``."""
    import pyseccomp as seccomp

    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(denied, name)
        except (RuntimeError, ValueError, OSError):
            continue
    rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rules.add_rule(denied, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as sink:
        rules.export_bpf(sink)
        sink.seek(0)
        return sink.read()


def program_fd() -> int:
    """A fresh memfd holding the filter, positioned at 0, for one bwrap start."""
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    os.write(fd, filter_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
