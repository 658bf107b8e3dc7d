"""The confinement every process that runs user code applies to itself last.

Landlock where the process is not in the agent's domain already (writes only
beneath the sandbox's writable places), no new privileges, and the user seccomp filter, which the host compiled and the agent
installs as a raw BPF program (stdlib ``ctypes``, no seccomp library in the
sandbox). In the process sandbox bwrap gives the whole sandbox a looser outer
filter, since the agent itself must still be able to make the namespaces of
isolated runs; the user filter is stacked on top of it in every child, so user
code gets the union of both. An isolated run also drops every capability it
holds in its own user namespace first.
"""

from __future__ import annotations

import ctypes

from corral.agent.isolation import drop_capabilities, last_capability
from corral.agent.landlock import abi_version, restrict_writes, structures as landlock_structures
from corral.agent.libc import libc

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SOCK_FILTER_BYTES = 8


class LockdownError(OSError):
    """The confinement could not be applied: the child must not run user code."""


class Lockdown:
    """Landlock paths and the raw seccomp program (bytes, possibly empty) for user processes."""

    def __init__(self, landlock_paths, seccomp_program):
        self.landlock_paths = list(landlock_paths)
        self.seccomp_program = seccomp_program or b""
        if len(self.seccomp_program) % _SOCK_FILTER_BYTES:
            raise ValueError("the seccomp program is not a whole number of BPF instructions")

    def apply(self, isolated):
        """Confine this process before it runs user code.

        An isolated run's process (forked by its init or relay, which has no Landlock domain)
        drops its capabilities and makes a scoped Landlock domain of its own; every
        other child is already in the agent's domain, inherited at fork.
        """
        if isolated:
            drop_capabilities()
            # the kernel has Landlock (the agent's own domain came from it), so a run it did not confine never starts
            if self.landlock_paths and not restrict_writes(self.landlock_paths, scoped=True) and abi_version() > 0:
                raise LockdownError(0, "cannot confine the run with Landlock")
        handle = libc()
        if handle.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LockdownError(ctypes.get_errno(), "cannot set no_new_privs")
        if self.seccomp_program:
            install_seccomp(self.seccomp_program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def warm_up():
    """Build, once in the zygote, what every isolated run's confinement would otherwise build for itself
    (ctypes types and function pointers, the kernel's capability count): each fork inherits them."""
    handle = libc()
    for name in ("prctl", "syscall", "mount", "unshare"):
        getattr(handle, name)
    last_capability()
    landlock_structures()


def install_seccomp(program):
    """Install a raw ``struct sock_filter`` array as this process's (additional) seccomp filter."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _SOCK_FILTER_BYTES, ctypes.addressof(buffer))
    if libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise LockdownError(ctypes.get_errno(), "cannot install the seccomp filter")
