"""The seccomp-bpf filters sandboxes run under: a process sandbox whole, and user code on every level.

A deny-list, not an allow-list: allow-lists written by hand kill real runtimes
on the first syscall nobody thought of (a peer's kills python3 on ``sysinfo``,
node on ``capget`` and ``sh`` on ``vfork``). What is denied here is the kernel
surface a sandboxed program has no business using: mounts and namespaces,
kernel modules and keyrings, tracing other processes, BPF and perf, io_uring,
clock and host settings, and terminal input injection. Denied calls fail with
EPERM (ENOSYS for ``clone3``, so libc falls back to ``clone``, whose flags a
filter can see) instead of killing the process, so programs see an ordinary
error. The filters are compiled once per host and kept (:func:`cached_program`).

Two layers (per-run isolation, see ``corral.agent.isolation``): bwrap installs
:func:`agent_filter_program` for the whole sandbox, which still lets the agent's
children make each isolated run's namespaces (``unshare``, ``mount``); every
child that runs user code then stacks :func:`filter_program` on top of it, which
denies those again and any ``clone`` that asks for a new namespace.
A microVM's agent gets :func:`filter_program` with its ``configure`` request and
stacks it the same way.

One part is an allow-list: the address families of ``socket`` and
``socketpair`` (:func:`add_socket_family_rules`). Most families have no network
namespace to confine them (AF_VSOCK reaches the hypervisor of the machine
corral runs on) or are kernel attack surface (AF_ALG, AF_PACKET, AF_KEY...).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import importlib.util
import os
import platform
import socket
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from corral.host.data_dir import data_dir

#: Syscalls no sandboxed program gets (EPERM). A name libseccomp does not know
#: and :data:`SYSCALL_NUMBERS` does not number fails the build (never skipped).
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

#: Numbers, per machine (``platform.machine()``), of denied syscalls newer than the system's
#: libseccomp (2.5.4 predates Linux 6.8's LSM calls). Calls added since Linux 5.1 share one
#: number on every architecture.
SYSCALL_NUMBERS = {
    "x86_64": {"lsm_set_self_attr": 460},
    "aarch64": {"lsm_set_self_attr": 460},
}

#: The address families ``socket`` may use: Unix sockets (the host's services, local IPC),
#: IPv4/IPv6 (the sandbox's own network namespace) and netlink, for NETLINK_ROUTE only (which
#: reads the sandbox's own interfaces: node's ``os.networkInterfaces()``, ``getifaddrs``,
#: ``if_nameindex``, ``ip addr`` fail without it). Every other family fails with EAFNOSUPPORT.
SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
#: ``socketpair`` only makes sense (and only works in Linux) for Unix sockets.
SOCKETPAIR_FAMILIES = (socket.AF_UNIX,)
#: The one netlink protocol allowed, NETLINK_ROUTE (others fail with EPROTONOSUPPORT).
NETLINK_PROTOCOL = 0
#: Linux numbers its address families below this (AF_MAX is 46 in 6.x). Families from here up,
#: and any argument with bits above the low 32 set (which the kernel would ignore), are refused
#: by one comparison, so a family a future kernel adds is refused too.
FAMILY_LIMIT = 64

#: Denied to user code, but allowed to the agent's children before they run any: making and
#: mounting the fresh namespaces of an isolated run.
RUN_SETUP_SYSCALLS = ("unshare", "mount")

_CLONE_NEWUSER = 0x10000000
#: clone() flags asking for a new namespace (user code gets none: its run has its own already).
_CLONE_NEW_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C


#: Compiled filters are kept in ``<data dir>/seccomp/`` (see :func:`cached_program`).
CACHE_DIR = "seccomp"
#: A ``struct sock_filter`` is 8 bytes: a cached file of another size is not a program.
_INSTRUCTION_BYTES = 8


@lru_cache(maxsize=1)
def filter_program() -> bytes:
    """The user-code filter (raw ``struct sock_filter`` array), installed by every child before user code."""
    return cached_program("user", lambda: _compile(DENIED_SYSCALLS, _CLONE_NEW_NAMESPACE_FLAGS))


@lru_cache(maxsize=1)
def agent_filter_program() -> bytes:
    """The whole sandbox's filter, for bwrap's ``--seccomp``: the user filter minus RUN_SETUP_SYSCALLS."""
    return cached_program("agent", lambda: _compile(
        tuple(name for name in DENIED_SYSCALLS if name not in RUN_SETUP_SYSCALLS), (_CLONE_NEWUSER,)))


def cached_program(name: str, compile_program: Callable[[], bytes]) -> bytes:
    """The filter ``name`` as compiled earlier on this host with the same inputs, else ``compile_program()`` (kept).

    Compiling imports pyseccomp (which runs ``ldconfig``) and libseccomp: about 10 ms of the first
    sandbox start of every process, ``corral run`` included. The file is named by everything its
    bytes depend on (:func:`compile_inputs_digest`), so a change of any of them compiles anew. The
    data directory is trusted as much as the agent bundle every sandbox runs from (the runtime
    directory next to it). Without pyseccomp or libseccomp nothing is cached, and compiling raises.
    """
    digest = compile_inputs_digest()
    if digest is None:
        return compile_program()
    path = data_dir() / CACHE_DIR / f"{name}-{digest}.bpf"
    with contextlib.suppress(OSError):
        program = path.read_bytes()
        if program and len(program) % _INSTRUCTION_BYTES == 0:
            return program
    program = compile_program()
    with contextlib.suppress(OSError):  # a data directory we cannot write: compile every time, as before
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".staging-")
        try:
            with os.fdopen(fd, "wb") as sink:
                sink.write(program)
            os.chmod(staging, 0o644)
            os.replace(staging, path)  # readers see the whole program or none
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
    return program


@lru_cache(maxsize=1)
def compile_inputs_digest() -> str | None:
    """A digest of what the compiled filters depend on, or None without pyseccomp or libseccomp.

    This module's source (the rules), pyseccomp's source, libseccomp's version and API level (it
    is asked directly, without importing pyseccomp), the architecture and the kernel release.
    """
    spec = importlib.util.find_spec("pyseccomp")
    if spec is None or spec.origin is None:
        return None
    try:
        library = ctypes.CDLL("libseccomp.so.2")
        sources = Path(__file__).read_bytes() + b"\0" + Path(spec.origin).read_bytes()
    except OSError:
        return None
    library.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    version = tuple(library.seccomp_version().contents)
    api_get = getattr(library, "seccomp_api_get", None)
    if api_get is not None:
        api_get.restype = ctypes.c_uint
    api = api_get() if api_get is not None else 0
    digest = hashlib.sha256(sources)
    digest.update(repr((version, api, platform.machine(), os.uname().release)).encode())
    return digest.hexdigest()[:32]


def _compile(denied_syscalls: tuple[str, ...], clone_flags: tuple[int, ...]) -> bytes:
    import pyseccomp as seccomp

    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in denied_syscalls:
        rules.add_rule(denied, syscall_number(name))
    add_socket_family_rules(rules)
    for flag in clone_flags:
        rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rules.add_rule(denied, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as sink:
        rules.export_bpf(sink)
        sink.seek(0)
        return sink.read()


def syscall_number(name: str, machine: str | None = None) -> int:
    """The number of syscall ``name`` for this host's architecture, as libseccomp rules take it.

    Negative for a name that exists only on other architectures (libseccomp's pseudo-syscalls,
    which rules accept and never match). Raises ValueError for a name neither libseccomp nor
    :data:`SYSCALL_NUMBERS` knows: a misspelt or too-new rule must not vanish silently.
    """
    import pyseccomp as seccomp

    number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    if number != -1:  # __NR_SCMP_ERROR
        return number
    machine = machine or platform.machine()
    known = SYSCALL_NUMBERS.get(machine, {})
    if name not in known:
        raise ValueError(f"libseccomp does not know the syscall {name!r} and corral has no number for it on {machine}")
    return known[name]


def add_socket_family_rules(rules) -> None:
    """Add the address-family allow-list to ``rules`` (a default-allow ``pyseccomp.SyscallFilter``).

    libseccomp rules only deny, so each family below :data:`FAMILY_LIMIT` that is not allowed
    gets its own rule, and everything from the limit up (64-bit compare) gets one more.
    """
    import pyseccomp as seccomp

    refused = seccomp.ERRNO(errno.EAFNOSUPPORT)
    for name, allowed in (("socket", SOCKET_FAMILIES), ("socketpair", SOCKETPAIR_FAMILIES)):
        for family in range(FAMILY_LIMIT):
            if family not in allowed:
                rules.add_rule(refused, name, seccomp.Arg(0, seccomp.EQ, family))
        rules.add_rule(refused, name, seccomp.Arg(0, seccomp.GE, FAMILY_LIMIT))
    rules.add_rule(seccomp.ERRNO(errno.EPROTONOSUPPORT), "socket",
                   seccomp.Arg(0, seccomp.EQ, socket.AF_NETLINK), seccomp.Arg(2, seccomp.NE, NETLINK_PROTOCOL))


def program_fd() -> int:
    """A fresh memfd holding the sandbox-wide (agent) filter, positioned at 0, for one bwrap start."""
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    os.write(fd, agent_filter_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
