"""Host uids for QEMU: one per VM, so a guest that escapes into QEMU cannot reach another VM.

Processes of one uid can signal and (where YAMA allows) trace each other and enter each
other's private directories. Every VM's QEMU therefore runs as its own uid, drawn from a
range far above what distributions allocate to users (``UID_MAX`` in login.defs is 60000),
with one shared supplementary group: the one allowed to map memory-template RAM files, which
QEMU 7.2 opens read-write even for a private, copy-on-write mapping.
"""

from __future__ import annotations

import os
import secrets

#: First uid of the range (2^30); the range holds 2^24 uids.
VM_UID_BASE = 1 << 30
#: The group that may open template RAM files (no VM has it as its own gid).
TEMPLATE_GID = VM_UID_BASE


def vm_credentials() -> tuple[int, int] | None:
    """A fresh (uid, gid) for one QEMU process, or None when corral does not run as root."""
    if os.geteuid() != 0:
        return None
    uid = VM_UID_BASE + 1 + secrets.randbelow(1 << 24)
    return uid, uid
