"""Reseeding the kernel's random number generator with entropy from the host.

VMs restored from one memory snapshot start with the same kernel RNG state;
until the kernel reseeds on its own, ``/dev/urandom`` would give every clone
the same bytes. The agent (root in the guest) credits the host's bytes to the
input pool and forces the CRNG to reseed from it at once.
"""

from __future__ import annotations

import fcntl
import os
import struct

#: ioctl numbers from <linux/random.h>.
_RNDADDENTROPY = 0x40085203
_RNDRESEEDCRNG = 0x5207


def reseed(seed):
    """Mix ``seed`` (bytes from the host) into the kernel RNG, credited, and reseed the CRNG now."""
    if not seed:
        return
    fd = os.open("/dev/urandom", os.O_WRONLY)
    try:
        fcntl.ioctl(fd, _RNDADDENTROPY, struct.pack("ii", len(seed) * 8, len(seed)) + seed)
        fcntl.ioctl(fd, _RNDRESEEDCRNG)
    finally:
        os.close(fd)
