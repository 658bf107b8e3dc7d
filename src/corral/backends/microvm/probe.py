"""Does the microVM level work on this host, and with which accelerator?

Checked without booting anything: QEMU with the ``microvm`` machine and
seccomp support, a guest image that exists or can be built, and the
accelerator the KVM boot probe chose (if it ran already: the first microVM
start, ``corral image build`` and ``corral doctor --probe-kvm`` run it).
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

from corral.backends.base import ProbeResult
from corral.backends.microvm.accel import AccelChoice, cached_choice, kvm_problem, qemu_version

QEMU = "qemu-system-x86_64"


@lru_cache(maxsize=1)
def qemu_binary() -> str:
    """Path of the QEMU system emulator (raises FileNotFoundError when it is not installed)."""
    found = shutil.which(QEMU, path="/usr/bin:/usr/local/bin:/bin")
    if found is None:
        raise FileNotFoundError(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    return found


def kvm_proven() -> bool:
    """True when the KVM boot probe's cached answer for this host is KVM (cheap: no subprocess).

    It is what makes :func:`probe` report hardware isolation, so ``isolation="auto"`` probes
    the microVM level only when it is True.
    """
    try:
        return _is_kvm(cached_choice(qemu_binary()))
    except OSError:  # no QEMU, or no boot id to key the cache with
        return False


def _is_kvm(choice: AccelChoice | None) -> bool:
    return choice is not None and choice.accel == "kvm"


@lru_cache(maxsize=1)
def probe() -> ProbeResult:
    """Check QEMU, the guest image and the accelerator."""
    from corral.backends.microvm.image import image_problem

    details: dict[str, str] = {}
    try:
        binary = qemu_binary()
    except FileNotFoundError as exc:
        return ProbeResult(False, str(exc))
    details["qemu"] = f"{binary} ({qemu_version(binary)})"
    machines = subprocess.run([binary, "-machine", "help"], capture_output=True, text=True, timeout=20, check=False)
    if "microvm" not in machines.stdout:
        return ProbeResult(False, f"{binary} has no microvm machine type", details)
    problem = image_problem()
    if problem:
        return ProbeResult(False, f"the guest image cannot be built here: {problem}", details)
    details["guest image"] = "built from Debian packages on first use (corral image build)"
    choice = cached_choice(binary)
    if choice is not None:
        details["accelerator"] = f"{choice.accel}: {choice.reason}"
    else:
        kvm = kvm_problem()
        details["accelerator"] = (
            f"tcg: {kvm}" if kvm else "not probed yet: the first microVM start boots a guest under KVM to find out"
        )
    hardware = _is_kvm(choice)
    reason = "QEMU microvm with KVM" if hardware else "QEMU microvm under TCG emulation (no hardware isolation)"
    return ProbeResult(True, reason, details, hardware_isolated=hardware)
