"""The C library, for the few syscalls the standard library does not wrap (Landlock, prctl, System V IPC).

Loaded on first use: importing ``ctypes`` costs ~1.5 ms, and a forked child reuses the handle.
"""

from __future__ import annotations

_handle = None


def libc():
    """The process's C library through ctypes (``syscall`` returns a C long)."""
    global _handle
    if _handle is None:
        import ctypes

        _handle = ctypes.CDLL(None, use_errno=True)
        _handle.syscall.restype = ctypes.c_long
    return _handle
