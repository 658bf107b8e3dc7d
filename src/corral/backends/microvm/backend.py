"""The microVM isolation level: QEMU ``-M microvm``, KVM where it works, TCG elsewhere.

A sandbox start is, in order: the guest image (built once, cached by content),
the accelerator (a KVM boot probe, cached per host), the memory template for
the VM's shape (one cold boot, then saved), and a restore from that template.
Every VM, booted or restored, then gets a ``configure`` request: its env, the
language to pre-start, limits for user code and fresh entropy for the guest's
kernel RNG, so VMs restored from one template share no random state.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import shutil
import time
from functools import lru_cache
from pathlib import Path

from corral.backends import seccomp
from corral.backends.base import Backend, ProbeResult, parse_hello
from corral.backends.microvm import continuation, snapshot
from corral.backends.microvm.accel import AccelChoice, choose_accelerator, tsc_khz
from corral.backends.microvm.host_user import vm_credentials
from corral.backends.microvm.probe import kvm_proven, probe, qemu_binary
from corral.backends.microvm.qemu import VmShape, argv_fingerprint
from corral.backends.microvm.qmp import QmpError
from corral.backends.microvm.vm import Vm
from corral.errors import SandboxStartError
from corral.host.sandbox_user import sandbox_credentials
from corral.models import SandboxSpec
from corral.protocol import (Ack, ConfigureRequest, Error, ExecDone, ExecRequest, ReseedRequest, encode_request,
                             parse_event)

#: Guest memory on top of the sandbox's ``memory_mb``: the guest kernel, its page cache and the agent.
#: User code and the tmpfs mounts share ``memory_mb`` (as in the process sandbox, whose limits
#: keep the mounts from filling it), so the agent always has room.
GUEST_RESERVE_MB = 96
#: Cold boot (kernel, init, Python and the agent) to hello; generous for TCG on a loaded host.
BOOT_DEADLINE_S = 60.0
#: A restore and the first answer of the restored agent.
RESTORE_DEADLINE_S = 20.0
#: The id of the requests sent during start-up (the channel's own ids start at 1).
_START_ID = 0
_EMPTY_PROGRAM = {"python": "pass", "javascript": "0", "shell": "true", "cpp": "true"}
_ENTROPY_BYTES = 64


class MicrovmBackend(Backend):
    """QEMU microVMs with the corral agent as the guest's PID 1."""

    name = "microvm"
    capabilities = frozenset({"confinement", "resource_limits", "network_namespace", "per_run_isolation", "pty",
                              "memory_snapshot"})

    def __init__(self) -> None:
        self._accel: AccelChoice | None = None
        self._template_locks: dict[str, asyncio.Lock] = {}

    def probe(self) -> ProbeResult:
        """See :func:`corral.backends.microvm.probe.probe`."""
        return probe()

    def may_be_hardware_isolated(self) -> bool:
        """See :func:`corral.backends.microvm.probe.kvm_proven`."""
        return kvm_proven()

    async def start(self, spec: SandboxSpec) -> Vm:
        """A VM for ``spec``, restored from its shape's memory template (taken first if missing)."""
        try:
            return await self._start(spec)
        except OSError as exc:  # out of descriptors, memory, disk...: every step cleaned up after itself
            raise SandboxStartError(f"cannot start the VM: {exc}") from exc

    async def _start(self, spec: SandboxSpec) -> Vm:
        started = time.perf_counter()
        image = await _image()
        shape = await self.shape_for(spec, image)
        if os.environ.get("CORRAL_MICROVM_SNAPSHOTS", "1") == "0":
            vm = await cold_boot(image, shape)
        else:
            template = await self.template(image, shape)
            vm = await restore(image, template)
        async with vm.stopped_on_failure():
            await configure(vm, spec)
            await warm_up(vm, spec)
        vm.boot_ms = (time.perf_counter() - started) * 1000 - vm.setup_ms
        return vm

    async def pause(self, instance: Vm, directory: Path) -> None:
        """Save the VM whole (RAM, devices) into ``directory`` and stop it (see ``continuation``)."""
        image = await _image()
        await continuation.pause(instance, directory, snapshot.image_build(image.key, image.rootfs))

    async def resume(self, directory: Path, spec: SandboxSpec) -> Vm:
        """A VM continuing from a paused one, with fresh entropy for its kernel and its spare."""
        started = time.perf_counter()
        image = await _image()
        shape = continuation.read_shape(directory, snapshot.image_build(image.key, image.rootfs))
        vm = await incoming(image, shape, continuation.state_path(directory), with_ram=True)
        async with vm.stopped_on_failure():
            await _call(vm, ReseedRequest(id=_START_ID, entropy_b64=_entropy()), Ack, "reseed")
        vm.boot_ms = (time.perf_counter() - started) * 1000 - vm.setup_ms
        return vm

    async def shape_for(self, spec: SandboxSpec, image) -> VmShape:
        """Guest memory, vCPUs and accelerator for ``spec``."""
        accel = await self.accelerator(image)
        cpus = spec.limits.cpus or 1.0
        return VmShape(
            memory_mb=spec.limits.memory_mb + GUEST_RESERVE_MB,
            vcpus=max(1, math.ceil(cpus)),
            accel=accel.accel,
            tsc_khz=tsc_khz() if accel.accel == "tcg" else None,
            home_mb=spec.limits.writable_mb,
            tmp_mb=spec.limits.writable_mb,
            shm_mb=spec.limits.shm_mb,
        )

    async def accelerator(self, image) -> AccelChoice:
        """The accelerator for this host (probed once, then cached)."""
        if self._accel is None:
            self._accel = await choose_accelerator(qemu_binary(), _probe_boot(image))
        return self._accel

    async def template(self, image, shape: VmShape) -> snapshot.Template:
        """The memory template for ``shape``: found, or taken now from a cold-booted VM."""
        key = snapshot.template_key(snapshot.image_build(image.key, image.rootfs), _qemu_identity(), shape,
                                    argv_fingerprint(shape))
        found = snapshot.find_template(key, shape)
        if found is not None:
            return found
        lock = self._template_locks.setdefault(key, asyncio.Lock())
        async with lock, snapshot.TemplateLock(key):
            found = snapshot.find_template(key, shape)
            if found is not None:
                return found
            return await take_template(image, shape, key)


def probe_accelerator() -> AccelChoice:
    """Build the guest image if needed and run the KVM boot probe now (cached); for ``corral doctor``."""
    async def probe_now() -> AccelChoice:
        return await MicrovmBackend().accelerator(await _image())
    return asyncio.run(probe_now())


async def cold_boot(image, shape: VmShape, *, ram_file=None, deadline_s: float = BOOT_DEADLINE_S,
                    credentials: tuple[int, int] | None = None) -> Vm:
    """Launch a VM that boots its kernel; return it once its agent said hello."""
    vm = await Vm.launch(qemu_binary(), (image.kernel, image.initramfs, image.rootfs), shape,
                         ram_file=ram_file, as_root=_needs_root(shape), credentials=credentials)
    async with vm.stopped_on_failure():
        await vm.connect_agent(deadline_s)
        parse_hello(await vm.read_frame(deadline_s, "the guest agent's hello"))
    return vm


async def restore(image, template: snapshot.Template) -> Vm:
    """Launch a VM from ``template``: device state loaded, RAM mapped copy-on-write, guest running."""
    vm = await incoming(image, template.shape, template.state, ram_file=snapshot.clone_ram(template))
    vm.console_before = template.console_path
    return vm


async def incoming(image, shape: VmShape, state: Path, *, ram_file=None, with_ram: bool = False) -> Vm:
    """Launch a VM that loads saved ``state`` (a template's devices, or ``with_ram`` a whole paused VM)
    instead of booting; return it running, its sockets connected."""
    vm = await Vm.launch(qemu_binary(), (image.kernel, image.initramfs, image.rootfs), shape,
                         ram_file=ram_file, incoming=True, as_root=_needs_root(shape))
    async with vm.stopped_on_failure():
        await vm.connect_agent(RESTORE_DEADLINE_S)  # before the guest runs (see connect_agent)
        try:
            qmp = await asyncio.to_thread(snapshot.load, vm.files.qmp_socket, state, with_ram=with_ram)
            await asyncio.to_thread(snapshot.resume, qmp)
        except (SandboxStartError, QmpError, OSError) as exc:  # QEMU died or dropped its control socket
            raise SandboxStartError(f"{exc}{vm.explain()}") from exc
    return vm


async def take_template(image, shape: VmShape, key: str) -> snapshot.Template:
    """Cold-boot a VM with its RAM in a shared file, let it settle, save it as template ``key``."""
    build = snapshot.image_build(image.key, image.rootfs)
    await asyncio.to_thread(snapshot.remove_templates, lambda of: of != build)  # those of replaced images
    credentials = None if _needs_root(shape) else vm_credentials()
    staging = snapshot.staging_dir(key, credentials)
    try:
        vm = await cold_boot(image, shape, ram_file=snapshot.source_ram(staging), credentials=credentials)
        try:
            await asyncio.to_thread(snapshot.save, vm.files.qmp_socket, staging / "state")
            (staging / "console.log").write_text(vm.console_log())  # restored VMs show their boot
        finally:
            await vm.stop()
        return await asyncio.to_thread(snapshot.publish, staging, key, shape)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed template's RAM file is guest-sized
        raise


async def configure(vm: Vm, spec: SandboxSpec) -> None:
    """Send the VM its per-sandbox settings and fresh entropy; wait for the agent's ack."""
    await _call(vm, ConfigureRequest(
        id=_START_ID,
        env=spec.env_dict,
        prefork=spec.language if spec.language in ("python", "javascript") else None,
        entropy_b64=_entropy(),
        memory_bytes=spec.limits.memory_mb * 2**20,
        pids=spec.limits.pids,
        user_seccomp_b64=base64.b64encode(seccomp.filter_program()).decode(),
    ), Ack, "configure")


async def warm_up(vm: Vm, spec: SandboxSpec) -> None:
    """Run an empty program once, so the user's first run is not the one that pays for the cold VM.

    Under TCG a fresh QEMU has translated none of the guest's code, and a restored guest has
    touched none of its template's pages: the first run after a start costs ~7x the next ones.
    """
    language = "shell" if spec.language == "cpp" else spec.language  # a cpp sandbox runs shell scripts
    await _call(vm, ExecRequest(id=_START_ID, language=language, code=_EMPTY_PROGRAM[spec.language],
                                timeout_ms=int(RESTORE_DEADLINE_S * 1000)), ExecDone, "the warm-up run")


def _entropy() -> str:
    return base64.b64encode(os.urandom(_ENTROPY_BYTES)).decode()


async def _call(vm: Vm, request, answer: type, what: str) -> None:
    """Send one request during start-up and wait for its answer (output events are dropped)."""
    vm.writer.write(encode_request(request))
    await vm.writer.drain()
    while True:
        event = parse_event(await vm.read_frame(RESTORE_DEADLINE_S, f"the guest agent's answer to {what}"))
        if isinstance(event, Error) and event.id == _START_ID:
            raise SandboxStartError(f"the guest agent refused {what}: {event.message}")
        if isinstance(event, answer) and event.id == _START_ID:
            return


def _probe_boot(image):
    async def boot(shape: VmShape, deadline_s: float) -> None:
        vm = await cold_boot(image, shape, deadline_s=deadline_s)
        await vm.stop()
    return boot


def _needs_root(shape: VmShape) -> bool:
    """True when QEMU must keep root: KVM on a host whose /dev/kvm other users cannot open.

    TCG never needs root. Where /dev/kvm is world-accessible (a ``kvm`` group
    setup with mode 0666), KVM VMs run unprivileged too.
    """
    if shape.accel != "kvm" or sandbox_credentials() is None:
        return False
    return os.stat("/dev/kvm").st_mode & 0o006 != 0o006


@lru_cache(maxsize=1)
def _qemu_identity() -> str:
    stat = os.stat(qemu_binary())
    return f"{qemu_binary()}:{stat.st_size}:{int(stat.st_mtime)}"


async def _image():
    from corral.backends.microvm.image import ensure_image

    return await asyncio.to_thread(ensure_image)
