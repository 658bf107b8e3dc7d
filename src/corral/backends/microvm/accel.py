"""Choosing the accelerator: KVM when a guest really boots on it, TCG otherwise.

A ``/dev/kvm`` that exists does not prove a working KVM: on PVM hosts a
standard guest kernel hangs right after its decompressor. So the probe boots
the real guest image under KVM and waits for the agent's hello within a
deadline. The answer is cached per host boot, QEMU build and image, in the
data directory, so the probe's cost is paid once.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.backends.microvm.qemu import VmShape
from corral.errors import SandboxStartError
from corral.host.data_dir import data_dir

#: How long a KVM guest may take to reach the agent's hello (it takes well under a second where KVM works).
KVM_PROBE_DEADLINE_S = 10.0
_PROBE_MEMORY_MB = 256


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator to use and why."""

    accel: str  # "kvm" or "tcg"
    reason: str


def kvm_problem() -> str | None:
    """Why KVM cannot even be tried here, or None."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "no /dev/kvm (no hardware virtualization exposed to this host)"
    except OSError as exc:
        return f"cannot open /dev/kvm: {exc.strerror}"
    os.close(fd)
    return None


async def choose_accelerator(binary: str, boot) -> AccelChoice:
    """KVM if the image boots to the agent under it within the deadline, else TCG (cached).

    ``boot(shape, deadline_s)`` boots one VM to the agent's hello and stops it;
    it raises SandboxStartError on failure.
    """
    forced = os.environ.get("CORRAL_MICROVM_ACCEL")
    if forced in ("kvm", "tcg"):
        return AccelChoice(forced, f"set by CORRAL_MICROVM_ACCEL={forced}")
    problem = kvm_problem()
    if problem is not None:
        return AccelChoice("tcg", f"KVM unavailable: {problem}; using TCG emulation")
    cached = cached_choice(binary)
    if cached is not None:
        return cached
    try:
        await boot(VmShape(memory_mb=_PROBE_MEMORY_MB, vcpus=1, accel="kvm"), KVM_PROBE_DEADLINE_S)
        choice = AccelChoice("kvm", "KVM works: the guest booted to the agent under KVM")
    except SandboxStartError as exc:
        last = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
        choice = AccelChoice(
            "tcg",
            f"/dev/kvm exists but a guest did not boot on it within {KVM_PROBE_DEADLINE_S:.0f} s "
            f"(a PVM or nested KVM that cannot run a standard guest?); using TCG emulation. Last words: {last}",
        )
    _write_cache(_cache_path(binary), choice)
    return choice


def cached_choice(binary: str) -> AccelChoice | None:
    """The probe's answer for this host boot and QEMU build, if it was probed already."""
    try:
        return AccelChoice(**json.loads(_cache_path(binary).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _cache_path(binary: str) -> Path:
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    qemu = os.stat(binary)
    return data_dir() / "microvm" / f"accel-{boot_id}-{qemu.st_ino}-{int(qemu.st_mtime)}.json"


def _write_cache(path: Path, choice: AccelChoice) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(choice)))
    os.replace(temporary, path)


def tsc_khz() -> int | None:
    """The host TSC frequency in kHz when it is known to be constant (TCG guests read the host's TSC)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    if "constant_tsc" not in cpuinfo:
        return None
    for line in cpuinfo.splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return None


def qemu_version(binary: str) -> str:
    """``qemu-system-x86_64 --version``'s first line."""
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return result.stdout.splitlines()[0] if result.stdout else "unknown"
