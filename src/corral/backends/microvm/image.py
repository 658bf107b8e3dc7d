"""The guest image (kernel, initramfs, root file system): built from Debian packages, cached by content.

Cache layout under ``data_dir()``::

    debs/<name>_<version>_<arch>.deb   every downloaded package, shared by all builds
    images/.lock                       flock: one builder at a time
    images/.staging-*/                 a build in progress (removed by the next builder if it crashed)
    images/inputs/<inputs key>         text: the image key these inputs resolved to
    images/<key>/                      one finished image: vmlinuz, initramfs.cpio.gz, rootfs.ext4,
                                       packages.lock, image.json

The image key hashes what the image is made of: the resolved package versions,
the modules, ``init.sh``, the agent bundle (``runtime_dir()``'s content name),
``guest.agent_config()``, the host python that compiled the bytecode and
:data:`BUILDER_VERSION`. Resolving versions runs apt (about 3 s), so
:func:`ensure_image` first looks up an *inputs key*: the same inputs with the
apt index files' names, sizes and mtimes instead of the versions. The inputs
key changes on every ``apt-get update``; the image key only when a version
does, so a refreshed index costs one resolution, not a rebuild (and not the
snapshots keyed by the image). The result is memoized in-process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from corral.backends.microvm import apt_packages, guest, host_tools, initramfs, rootfs
from corral.backends.microvm.apt_packages import Package
from corral.errors import InvalidInputError, IsolationUnavailableError
from corral.host.data_dir import data_dir
from corral.host.runtime_dir import runtime_dir

#: Bump when the builder changes what it puts into an image.
BUILDER_VERSION = 1
#: The kernel: the ``linux-image-*`` package this meta-package depends on.
KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
KERNEL_FILE = "vmlinuz"
INITRAMFS_FILE = "initramfs.cpio.gz"
ROOTFS_FILE = "rootfs.ext4"
LOCK_FILE = "packages.lock"
METADATA_FILE = "image.json"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class GuestImage:
    """A built guest image; every file is world-readable."""

    key: str
    directory: Path
    kernel: Path
    initramfs: Path
    rootfs: Path
    kernel_version: str
    #: Bytes allocated on disk (the root file system image is sparse).
    size_bytes: int
    #: Unix time the build finished.
    created: float

    @classmethod
    def load(cls, directory: Path) -> GuestImage:
        """Read a finished image's metadata."""
        metadata = json.loads((directory / METADATA_FILE).read_text())
        return cls(key=directory.name, directory=directory, kernel=directory / KERNEL_FILE,
                   initramfs=directory / INITRAMFS_FILE, rootfs=directory / ROOTFS_FILE,
                   kernel_version=metadata["kernel_version"], size_bytes=metadata["size_bytes"],
                   created=metadata["created"])


@dataclass(frozen=True)
class Resolution:
    """The resolved packages of one image."""

    kernel: Package
    busybox: Package
    rootfs: tuple[Package, ...]

    def lock_text(self) -> str:
        """One ``role name=version arch`` line per package: what the image key hashes."""
        lines = [f"kernel {self.kernel.spec} {self.kernel.arch}", f"initramfs {self.busybox.spec} {self.busybox.arch}"]
        lines += [f"rootfs {package.spec} {package.arch}" for package in self.rootfs]
        return "\n".join(lines) + "\n"


_memo: dict[str, GuestImage] = {}


def images_dir() -> Path:
    """Where the images are kept."""
    return data_dir() / "images"


def image_problem() -> str | None:
    """Why a guest image cannot be built on this host, or None if it can."""
    if platform.machine() != "x86_64":
        return f"the guest image is built from Debian's amd64 packages; this host is {platform.machine()}"
    if os.geteuid() != 0:
        return "building the guest image needs root (its files must be owned by root and the home by the guest user)"
    missing = host_tools.missing_tools()
    if missing:
        return f"building the guest image needs {', '.join(missing)} (Debian packages apt, dpkg, tar, e2fsprogs, libc-bin)"
    try:
        version = rootfs.host_python_version()
    except IsolationUnavailableError as exc:
        return f"{host_tools.HOST_PYTHON} is needed to compile the guest's bytecode: {exc.reason}"
    if not version.startswith(rootfs.PYTHON_VERSION + "."):
        return f"{host_tools.HOST_PYTHON} is {version}; the guest's bytecode needs Debian's python {rootfs.PYTHON_VERSION}"
    return None


def ensure_image(progress: Progress | None = None, *, force: bool = False) -> GuestImage:
    """The image for the current inputs, built first if it is not cached (``force``: rebuilt anyway).

    The cached path reads a few small files (no apt). Raises
    ``IsolationUnavailableError`` if a build step fails; a failed build leaves nothing under a final name.
    """
    inputs = inputs_key(apt_packages.index_identity())
    if not force:
        found = _memo.get(inputs) or _cached(inputs)
        if found is not None and found.directory.is_dir():
            _memo[inputs] = found
            return found
    with _build_lock():
        if not force and (found := _cached(inputs)) is not None:
            _memo[inputs] = found
            return found
        image = _resolve_and_build(progress or _no_progress, force)
        # The index may have been refreshed on the way: record the inputs as they are now.
        _remember(inputs_key(apt_packages.index_identity()), image.key)
        _memo[inputs] = image
        return image


def list_images() -> list[GuestImage]:
    """Every finished image, newest first."""
    root = images_dir()
    images = [GuestImage.load(path) for path in root.iterdir() if (path / METADATA_FILE).is_file()] if root.is_dir() else []
    return sorted(images, key=lambda image: image.created, reverse=True)


def remove_image(key: str) -> None:
    """Delete one image (``InvalidInputError`` if there is no image ``key``)."""
    directory = images_dir() / key
    if key.startswith(".") or "/" in key or not (directory / METADATA_FILE).is_file():
        raise InvalidInputError(f"no guest image {key!r} (`corral image list` shows the images)")
    with _build_lock():
        _discard(directory)
        for pointer in (images_dir() / "inputs").glob("*"):
            if pointer.read_text().strip() == key:
                pointer.unlink()
    for memo_key in [k for k, image in _memo.items() if image.key == key]:
        del _memo[memo_key]


def inputs_key(index: list[tuple[str, int, int]]) -> str:
    """The lookup key: everything an image is made of, with the apt index's identity instead of versions."""
    return _digest({"index": index, "packages": [KERNEL_PACKAGE, BUSYBOX_PACKAGE, *rootfs.PACKAGES],
                    **_fixed_inputs()})


def image_key(resolution: Resolution, host_python: str) -> str:
    """The image's content key: resolved versions plus every other input."""
    return _digest({"lock": resolution.lock_text(), "host_python": host_python, **_fixed_inputs()})


def _fixed_inputs() -> dict:
    return {"builder": BUILDER_VERSION, "modules": list(initramfs.MODULES),
            "init": hashlib.sha256(initramfs.init_script()).hexdigest(), "agent_bundle": runtime_dir().name,
            "agent_config": guest.agent_config(), "port": guest.AGENT_PORT_NAME, "streams_port": guest.STREAMS_PORT_NAME,
            "config_path": guest.AGENT_CONFIG_PATH}


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _cached(inputs: str) -> GuestImage | None:
    pointer = images_dir() / "inputs" / inputs
    try:
        key = pointer.read_text().strip()
        return GuestImage.load(images_dir() / key)
    except (OSError, ValueError, KeyError):
        return None


def _remember(inputs: str, key: str) -> None:
    pointers = images_dir() / "inputs"
    pointers.mkdir(exist_ok=True)
    pointers.chmod(0o755)
    temporary = pointers / f".{inputs}.{os.getpid()}"
    temporary.write_text(key + "\n")
    temporary.chmod(0o644)
    os.replace(temporary, pointers / inputs)


@contextmanager
def _build_lock() -> Iterator[None]:
    root = images_dir()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resolve_and_build(progress: Progress, force: bool) -> GuestImage:
    problem = image_problem()
    if problem:
        raise IsolationUnavailableError("microvm", problem)
    host_python = rootfs.host_python_version()
    refreshed = False
    while True:
        try:
            progress("resolving packages", 0, 0)
            resolution = _resolve()
            key = image_key(resolution, host_python)
            if not force and (images_dir() / key / METADATA_FILE).is_file():
                return GuestImage.load(images_dir() / key)
            debs = apt_packages.download([resolution.kernel, resolution.busybox, *resolution.rootfs],
                                         data_dir() / "debs", progress)
            break
        except apt_packages.IndexMissingPackages as exc:
            if refreshed:
                raise IsolationUnavailableError("microvm", f"guest image: packages missing after apt-get update: {exc}") from exc
            progress("apt's index lacks packages: running apt-get update", 0, 0)
            apt_packages.update_index()
            refreshed = True
    return _build(key, resolution, debs, progress)


def _resolve() -> Resolution:
    boot = apt_packages.resolve([KERNEL_PACKAGE, BUSYBOX_PACKAGE])
    kernels = [p for p in boot if p.name.startswith("linux-image-") and p.name[len("linux-image-"):][:1].isdigit()]
    busybox = [p for p in boot if p.name == BUSYBOX_PACKAGE]
    if len(kernels) != 1 or len(busybox) != 1:
        raise IsolationUnavailableError("microvm", f"guest image: {KERNEL_PACKAGE} resolved to kernels {kernels}")
    return Resolution(kernels[0], busybox[0], tuple(apt_packages.resolve(rootfs.PACKAGES)))


def _build(key: str, resolution: Resolution, debs: dict[Package, Path], progress: Progress) -> GuestImage:
    root = images_dir()
    for leftover in root.glob(".staging-*"):  # we hold the lock: these are from builders that died
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        out = staging / key
        out.mkdir()
        kernel_version = _build_boot_files(resolution, debs, staging / "kernel", out, progress)
        _build_rootfs(resolution, debs, staging / "rootfs", out, progress)
        (out / LOCK_FILE).write_text(resolution.lock_text())
        for path in out.iterdir():
            path.chmod(0o644)
        out.chmod(0o755)
        metadata = {"kernel_version": kernel_version, "created": time.time(),
                    "size_bytes": sum(path.stat().st_blocks * 512 for path in out.iterdir())}
        (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        (out / METADATA_FILE).chmod(0o644)
        _discard(root / key)  # only with force: the same key, rebuilt
        os.rename(out, root / key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("done", 1, 1)
    return GuestImage.load(root / key)


def _build_boot_files(resolution: Resolution, debs: dict[Package, Path], work: Path, out: Path,
                      progress: Progress) -> str:
    progress("extracting the kernel", 0, 0)
    work.mkdir()
    host_tools.run("extracting the kernel", ["dpkg-deb", "-x", str(debs[resolution.kernel]), str(work / "linux")])
    kernel = initramfs.Kernel.from_tree(work / "linux")
    shutil.copyfile(kernel.vmlinuz, out / KERNEL_FILE)
    progress("writing the initramfs", 0, 0)
    host_tools.run("extracting busybox", ["dpkg-deb", "-x", str(debs[resolution.busybox]), str(work / "busybox")])
    modules = initramfs.kernel_modules(kernel)
    user = guest.GUEST_USER
    conf = initramfs.init_conf([name for name, _ in modules], guest.AGENT_PORT_NAME, guest.AGENT_CONFIG_PATH,
                               guest.agent_config()["home"], user, guest.STREAMS_PORT_NAME)
    initramfs.build_initramfs((work / "busybox/bin/busybox").read_bytes(), modules, conf, out / INITRAMFS_FILE)
    shutil.rmtree(work)
    return kernel.version


def _build_rootfs(resolution: Resolution, debs: dict[Package, Path], tree: Path, out: Path,
                  progress: Progress) -> None:
    packages = list(resolution.rootfs)
    tree.mkdir()
    rootfs.prepare(tree)
    for done, package in enumerate(packages):
        progress(f"extracting {len(packages)} packages", done, len(packages))
        rootfs.unpack([debs[package]], tree)
    progress(f"extracting {len(packages)} packages", len(packages), len(packages))
    config = guest.agent_config()
    rootfs.configure(tree, runtime_dir(), config, guest.AGENT_CONFIG_PATH, config["home"], guest.GUEST_USER)
    progress("compiling bytecode", 0, 0)
    rootfs.compile_bytecode(tree)
    progress("mke2fs", 0, 0)
    rootfs.make_ext4(tree, out / ROOTFS_FILE)
    shutil.rmtree(tree)


def _discard(directory: Path) -> None:
    """Remove an image directory without ever exposing a half-deleted one under its name."""
    if not directory.exists():
        return
    trash = directory.with_name(f".staging-removed-{directory.name}-{os.getpid()}")
    os.rename(directory, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _no_progress(step: str, done: int, total: int) -> None:
    pass
