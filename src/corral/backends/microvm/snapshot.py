"""Memory-template snapshots: boot once, then start every VM as a restore.

A template is taken from a VM whose guest RAM lives in a file (mapped shared):
once its agent is ready, QEMU is stopped and its device state migrated to a
small file, skipping RAM (``x-ignore-shared``: RAM already is in the file).
New VMs map the RAM file copy-on-write (private) and load the device state:
the guest continues where the template stopped, with no boot, and the pages
clones never write stay shared between them.

Migration goes through a file descriptor handed to QEMU over QMP, because
QEMU's own seccomp filter (``spawn=deny``) forbids the ``exec:`` transport.
A template is only valid for the exact image, QEMU and VM shape it was made
with, so its directory is named after a hash of them; it is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.backends.microvm.qemu import RamFile, VmShape
from corral.backends.microvm.qmp import Qmp, QmpError
from corral.backends.microvm.host_user import TEMPLATE_GID
from corral.errors import SandboxStartError
from corral.host.data_dir import data_dir

#: Bump when the way templates are taken changes.
TEMPLATE_FORMAT = 1
def _ignore_shared(state: bool) -> dict:
    """Migrate RAM that lives in a shared file (False) or skip it (True: a template's RAM is its file).

    Set explicitly each time: a VM restored from a template keeps the capability on.
    """
    return {"capabilities": [{"capability": "x-ignore-shared", "state": state}]}
_MIGRATION_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Template:
    """A finished template: the guest's RAM file and its device state."""

    directory: Path
    shape: VmShape

    @property
    def ram(self) -> Path:
        """Guest RAM as of the moment the template was taken."""
        return self.directory / "ram"

    @property
    def state(self) -> Path:
        """QEMU's device state (the migration stream without RAM)."""
        return self.directory / "state"

    @property
    def console_path(self) -> Path:
        """The serial console of the boot the template was taken from."""
        return self.directory / "console.log"


#: /dev/shm must have this much room to hold templates (containers often give it only 64 MiB).
_SHM_MIN_FREE = 2 * 2**30


def template_root() -> Path:
    """Where templates live: tmpfs (``/dev/shm``) when it has room, so restores never read a disk.

    On tmpfs the folder is named for the data directory too: each corral installation on a host
    removes the templates of builds it replaced, and must not remove another installation's.
    """
    configured = os.environ.get("CORRAL_TEMPLATE_DIR")
    if configured:
        return Path(configured)
    data = data_dir()
    try:
        shm = os.statvfs("/dev/shm")
        if shm.f_bavail * shm.f_frsize >= _SHM_MIN_FREE:
            owner = hashlib.sha256(os.fsencode(data.resolve())).hexdigest()[:12]
            return Path(f"/dev/shm/corral-templates-{owner}")
    except OSError:
        pass
    return data / "templates"


def image_build(image_key: str, rootfs: Path) -> str:
    """One build of an image: its key plus its root file system's identity.

    A forced rebuild keeps the key but lays the file system out anew; a template of the
    previous build would restore a guest whose page cache no longer matches its disk.
    """
    stat = rootfs.stat()
    return f"{image_key}-{stat.st_ino:x}{stat.st_mtime_ns:x}"


def template_key(build: str, qemu_identity: str, shape: VmShape, argv: str) -> str:
    """The name of the template for this image build, QEMU binary, VM shape and command line.

    It starts with ``build``. ``argv`` is :func:`~corral.backends.microvm.qemu.argv_fingerprint`:
    a template restored under any other CPU model or device set would hang the guest.
    """
    material = f"{TEMPLATE_FORMAT}|{build}|{qemu_identity}|{shape!r}|{argv}"
    return f"{build}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def remove_templates(of_build: Callable[[str], bool]) -> int:
    """Delete the templates whose image build (see :func:`image_build`) ``of_build`` accepts; return how many.

    Templates are guest RAM on tmpfs: those of an image that was replaced or removed would
    hold host memory for nothing. VMs already restored from a removed template keep running
    (their mapping of its RAM stays valid).
    """
    root = template_root()
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        if not entry.name.startswith(".") and of_build(entry.name.rsplit("-", 1)[0]):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def find_template(key: str, shape: VmShape) -> Template | None:
    """The finished template named ``key``, if there is one."""
    directory = template_root() / key
    template = Template(directory, shape)
    return template if template.state.is_file() and template.ram.is_file() else None


class TemplateLock:
    """An exclusive lock on building one template, across processes (flock) and coroutines."""

    def __init__(self, key: str):
        root = template_root()
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o711)
        self.path = root / f".{key}.lock"
        self._fd: int | None = None

    async def __aenter__(self) -> TemplateLock:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        await asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_EX)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def staging_dir(key: str, credentials: tuple[int, int] | None) -> Path:
    """A fresh directory the template's source VM writes into (owned by its QEMU's ``credentials``)."""
    directory = template_root() / f".staging-{key}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    if credentials is not None:
        os.chown(directory, *credentials)
    return directory


def source_ram(staging: Path) -> RamFile:
    """The shared RAM file of the VM a template is taken from."""
    return RamFile(staging / "ram", shared=True)


def clone_ram(template: Template) -> RamFile:
    """The copy-on-write mapping of a template's RAM for a restored VM."""
    return RamFile(template.ram, shared=False)


def save(qmp_socket: Path, state_path: Path, *, with_ram: bool = False) -> None:
    """Stop the VM and write its state: device state only (RAM stays in its shared file, for a
    template), or ``with_ram`` everything (a continuation). Blocking; the VM stays stopped."""
    fd = os.open(state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        qmp = Qmp(qmp_socket)
        try:
            qmp.execute("migrate-set-capabilities", _ignore_shared(not with_ram))
            qmp.execute("stop")
            qmp.execute("getfd", {"fdname": "snapshot"}, fds=[fd])
            qmp.execute("migrate", {"uri": "fd:snapshot"})
            qmp.wait_for_migration(_MIGRATION_DEADLINE_S)
            os.fsync(fd)
        finally:
            qmp.close()
    except QmpError as exc:
        raise SandboxStartError(f"cannot save the VM: {exc}") from None
    finally:
        os.close(fd)


def publish(staging: Path, key: str, shape: VmShape) -> Template:
    """Make a complete staging directory the template ``key`` (atomically).

    As root, the RAM file then belongs to root and to the group every QEMU has
    (``TEMPLATE_GID``): QEMU 7.2 opens it read-write even to map it privately.
    """
    if os.geteuid() == 0:
        os.chown(staging / "ram", 0, TEMPLATE_GID)
        os.chmod(staging / "ram", 0o660)
        os.chown(staging, 0, TEMPLATE_GID)
        os.chmod(staging, 0o750)
    target = template_root() / key
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    return Template(target, shape)


def load(qmp_socket: Path, state_path: Path, *, with_ram: bool = False) -> Qmp:
    """Load saved state into a VM started with ``-incoming defer`` (``with_ram``: a continuation,
    whose stream holds the RAM too). Blocking.

    Returns the QMP connection; the caller connects to the agent, then calls
    :func:`resume`, since the guest must find the host end of its port connected.
    """
    qmp = Qmp(qmp_socket)
    try:
        fd = os.open(state_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            qmp.execute("migrate-set-capabilities", _ignore_shared(not with_ram))
            qmp.execute("getfd", {"fdname": "snapshot"}, fds=[fd])
            qmp.execute("migrate-incoming", {"uri": "fd:snapshot"})
            qmp.wait_for_migration(_MIGRATION_DEADLINE_S)
        finally:
            os.close(fd)
    except BaseException as exc:
        qmp.close()
        if isinstance(exc, QmpError):
            raise SandboxStartError(f"cannot restore the VM: {exc}") from None
        raise
    return qmp


def resume(qmp: Qmp) -> None:
    """Let a restored guest run. Blocking."""
    try:
        qmp.execute("cont")
    except QmpError as exc:
        raise SandboxStartError(f"cannot resume the restored VM: {exc}") from None
    finally:
        qmp.close()
