"""The QEMU command line for one microVM: a description in, argv out.

Pure: it reads nothing and starts nothing, so it is unit-tested without QEMU.
The machine is ``-M microvm`` (virtio-mmio, no PCI, no firmware tables beyond
what the kernel needs), with no default devices, no display and no network
device. The guest sees a read-only root disk, a virtio-serial port carrying
the agent protocol and one carrying the host streams (its only way to the
sandbox's proxy and port forwarding), and a serial console that goes to a log file. Under TCG
the guest is told the TSC frequency (microvm has no other clock to calibrate
against); under KVM the CPU is the host's minus nested virtualization.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.backends.microvm.guest import AGENT_PORT_NAME, STREAMS_PORT_NAME

#: QEMU's own seccomp filter: no obsolete calls, no privilege changes, no exec, no
#: resource-control calls. ``spawn=deny`` is why snapshots use fd migration.
SECCOMP_SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
#: Size of TCG's translated-code cache in MiB: the default (1 GiB) grows idle VMs' RSS.
TCG_CACHE_MB = 32
#: The emulated CPU: baseline x86-64 plus RDRAND (the guest's RNG is ready at once). Measured
#: against ``max`` (AVX2...) and ``Nehalem`` (SSE4.2): glibc's vector string functions are slower
#: to emulate, so the baseline boots ~10% faster and runs ``print(1)`` in 17-19 ms instead of 20-24.
TCG_CPU = "qemu64,+rdrand"
#: Besides the console and panic-means-exit: no crypto self-tests, one UART to probe, no timer
#: check, no audit, no soft-lockup watchdog (emulation is slow, not stuck), RDRAND trusted for the
#: first seed. Measured under TCG: /init starts at 0.8 s instead of 1.05 s, hello 0.35 s sooner.
_KERNEL_ARGS = ("console=ttyS0 panic=-1 quiet cryptomgr.notests 8250.nr_uarts=1 no_timer_check audit=0 "
                "nowatchdog random.trust_cpu=on")


@dataclass(frozen=True)
class VmFiles:
    """Host paths a VM uses: its image (shared, read-only) and its private sockets and log."""

    kernel: Path
    initramfs: Path
    rootfs: Path
    agent_socket: Path
    qmp_socket: Path
    console_log: Path
    #: The host streams channel (the guest's way to the sandbox's service sockets).
    streams_socket: Path


@dataclass(frozen=True)
class VmShape:
    """What the guest gets: memory, vCPUs, the accelerator."""

    memory_mb: int
    vcpus: int
    accel: str  # "kvm" or "tcg"
    #: Host TSC frequency in kHz, given to the guest kernel under TCG (None: let it calibrate).
    tsc_khz: int | None = None
    #: Sizes of the guest's writable tmpfs mounts (home, /tmp, /dev/shm) in MiB; guest RAM backs them.
    home_mb: int = 64
    tmp_mb: int = 64
    shm_mb: int = 16


@dataclass(frozen=True)
class RamFile:
    """Guest RAM kept in a file, for memory-template snapshots.

    ``shared=True`` writes guest RAM into the file (the VM a template is taken
    from); ``shared=False`` maps it copy-on-write (VMs restored from it).
    """

    path: Path
    shared: bool


def qemu_argv(binary: str, files: VmFiles, shape: VmShape, *, ram_file: RamFile | None = None,
              incoming: bool = False, seccomp: bool = True) -> list[str]:
    """The full QEMU command line for one VM."""
    # guest RAM is always the memory backend "ram", so that a migration stream from any VM
    # (a template, a continuation) names the same RAM block on the receiving side
    if ram_file is not None:
        backend = (f"memory-backend-file,id=ram,size={shape.memory_mb}M,mem-path={ram_file.path},"
                   f"share={'on' if ram_file.shared else 'off'}")
    else:
        backend = f"memory-backend-ram,id=ram,size={shape.memory_mb}M"
    argv = [binary, "-object", backend, "-M", "microvm,memory-backend=ram", "-m", f"{shape.memory_mb}M",
            "-smp", str(shape.vcpus)]
    argv += _accelerator(shape)
    argv += [
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(files.kernel),
        "-initrd", str(files.initramfs),
        "-append", _kernel_args(shape),
        "-chardev", f"file,id=console,path={files.console_log}",
        "-serial", "chardev:console",
        "-drive", f"id=root,file={files.rootfs},format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=root",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agent,path={files.agent_socket},server=on,wait=off",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT_NAME}",
        "-chardev", f"socket,id=streams,path={files.streams_socket},server=on,wait=off",
        "-device", f"virtserialport,chardev=streams,name={STREAMS_PORT_NAME}",
        "-qmp", f"unix:{files.qmp_socket},server=on,wait=off",
    ]
    if seccomp:
        argv += ["-sandbox", SECCOMP_SANDBOX]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


def _accelerator(shape: VmShape) -> list[str]:
    if shape.accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host,-vmx,-svm"]
    if shape.accel == "tcg":
        return ["-accel", f"tcg,tb-size={TCG_CACHE_MB}", "-cpu", TCG_CPU]
    raise ValueError(f"unknown accelerator {shape.accel!r}")


def _kernel_args(shape: VmShape) -> str:
    """The kernel command line; ``corral.*`` words are read by the guest's init."""
    args = f"{_KERNEL_ARGS} corral.home_mb={shape.home_mb} corral.tmp_mb={shape.tmp_mb} corral.shm_mb={shape.shm_mb}"
    if shape.accel == "tcg" and shape.tsc_khz:
        # QEMU derives an emulated TSC from the host's clock: steady, but the clocksource watchdog, comparing
        # it with jiffies that lag under emulation, would mark it unstable and drop the guest to 4 ms
        # refined-jiffies (every timer and sleep in the guest then rounds up to a tick)
        args += f" tsc_early_khz={shape.tsc_khz} tsc=reliable"
    return args


def argv_fingerprint(shape: VmShape) -> str:
    """The command line of a VM restored with ``shape``, with placeholder paths: what a template depends on."""
    files = VmFiles(*(Path(name) for name in ("kernel", "initramfs", "rootfs", "agent", "qmp", "console", "streams")))
    return " ".join(qemu_argv("qemu", files, shape, ram_file=RamFile(Path("ram"), shared=False), incoming=True))
