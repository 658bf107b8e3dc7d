"""The C library, for the few syscalls the standard library does not wrap (Landlock, prctl, System V IPC).

Loaded on first use: importing ``ctypes`` costs ~1.5 ms, and a forked child reuses the handle.
"""

from __future__ import annotations

_handles = {}


def libc():
    """The process's C library through ctypes (``syscall`` returns a C long)."""
    return _load("CDLL")


def libc_keeping_lock():
    """The same library through ``ctypes.PyDLL``: a call keeps the interpreter lock (``clone``, whose
    child must resume exactly where the caller was)."""
    return _load("PyDLL")


def _load(kind):
    handle = _handles.get(kind)
    if handle is None:
        import ctypes

        handle = _handles[kind] = getattr(ctypes, kind)(None, use_errno=True)
        handle.syscall.restype = ctypes.c_long
    return handle
