"""Landlock, applied by the agent to itself (and so to everything it starts).

A second, independent fence behind the mount namespace: even if a read-only
bind were remounted writable, user code could still only create, change or
remove files beneath the paths listed here. The agent applies it to itself
(and so to everything it forks) right after it forked the zygote, which stays
outside (a Landlock-restricted process may not mount, and isolated runs mount
fresh file systems); each isolated run applies it to itself (``lockdown.py``). Landlock is used through raw
syscalls (stdlib ``ctypes``) because no stdlib module wraps it. Where the
kernel lacks it, :func:`restrict_writes` returns 0 and nothing changes.
"""

from __future__ import annotations

import os
import stat

from corral.agent.libc import libc as load_libc

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_WRITE_FILE = 1 << 1
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_ALL = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1  # ABI 6


def restrict_writes(writable_paths, scoped=False):
    """Allow file changes only beneath ``writable_paths``; return the Landlock ABI used (0: none).

    ``scoped`` (ABI 6 and newer) also keeps signals and abstract Unix socket
    connections inside this process's own Landlock domain: an isolated run cannot
    reach the processes or abstract sockets of anything outside it.
    """
    import ctypes

    abi = abi_version()
    if abi <= 0:
        return 0
    libc = load_libc()
    handled = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_ALL
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    scopes = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if scoped and abi >= 6 else 0

    RulesetAttr, PathBeneath = structures()
    attr = RulesetAttr(handled, 0, scopes)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else 8
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0
    try:
        for path in writable_paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                # a rule on a file (/dev/null) may only carry file rights, or it is refused whole
                allowed = handled if stat.S_ISDIR(os.fstat(fd).st_mode) else handled & (_WRITE_FILE | _TRUNCATE)
                rule = PathBeneath(allowed, fd)
                libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(ruleset)
    return abi


_structure_types = None


def structures():
    """The ctypes types of the ruleset attribute and a path rule, made once (a fork inherits them: making a
    ctypes type costs more than the syscalls that use it)."""
    global _structure_types
    if _structure_types is None:
        import ctypes

        class RulesetAttr(ctypes.Structure):
            _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        _structure_types = RulesetAttr, PathBeneath
    return _structure_types


def abi_version():
    """The kernel's Landlock ABI version, 0 where Landlock is missing or disabled."""
    import ctypes

    abi = load_libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(abi, 0)
