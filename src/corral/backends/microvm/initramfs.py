"""The guest's kernel and initramfs: vmlinuz, the few modules it loads, busybox and ``init.sh``.

The kernel .deb ships no ``modules.dep`` (depmod runs in its postinst), so the
load order comes from each module's own ``depends=`` entry in its ``.modinfo``
section: dependencies first, depth-first. Modules built into the kernel
(``modules.builtin``) need no file. The archive is written here (cpio "newc",
gzip) rather than by a cpio program, so no device node has to be created on the
host and the result does not depend on the host's cpio.
"""

from __future__ import annotations

import gzip
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from corral.errors import IsolationUnavailableError

#: Modules /init loads; ext4 (with jbd2, mbcache, crc32c) is built into Debian's cloud kernel.
MODULES = ("virtio_mmio", "virtio_blk", "virtio_console", "overlay")
_DEPENDS = re.compile(rb"\0depends=([A-Za-z0-9_,-]*)\0")
_CONSOLE = (5, 1)


@dataclass(frozen=True)
class Kernel:
    """A kernel extracted from its .deb: its version, vmlinuz and module tree."""

    version: str
    vmlinuz: Path
    modules: Path

    @classmethod
    def from_tree(cls, root: Path) -> Kernel:
        """Find the one kernel in an extracted ``linux-image-*`` package."""
        versions = sorted(p.name for p in (root / "lib/modules").iterdir()) if (root / "lib/modules").is_dir() else []
        if len(versions) != 1:
            raise IsolationUnavailableError("microvm", f"guest image: expected one kernel in the .deb, found {versions}")
        return cls(versions[0], root / "boot" / f"vmlinuz-{versions[0]}", root / "lib/modules" / versions[0])

    def module_files(self) -> dict[str, Path]:
        """Every loadable module by its name (``-`` and ``_`` are the same in module names)."""
        return {_normal(path.name.removesuffix(".ko")): path for path in self.modules.rglob("*.ko")}

    def builtin(self) -> set[str]:
        """Names of the modules compiled into the kernel."""
        listing = self.modules / "modules.builtin"
        lines = listing.read_text().split() if listing.is_file() else []
        return {_normal(Path(line).name.removesuffix(".ko")) for line in lines}


def _normal(name: str) -> str:
    return name.replace("-", "_")


def module_depends(ko: bytes) -> list[str]:
    """The ``depends=`` list of a module's ``.modinfo`` (empty if it depends on nothing)."""
    match = _DEPENDS.search(ko)
    if not match or not match[1]:
        return []
    return [_normal(name) for name in match[1].decode().split(",")]


def load_order(wanted: Iterable[str], depends: Callable[[str], list[str] | None]) -> list[str]:
    """Every module to load for ``wanted``, dependencies first.

    ``depends(name)`` returns a module's dependencies, or None for a module
    built into the kernel (not loaded, and its own dependencies are built in too).
    Raises ``IsolationUnavailableError`` on a dependency cycle.
    """
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        name = _normal(name)
        if name in order:
            return
        if name in visiting:
            raise IsolationUnavailableError("microvm", f"guest image: module dependency cycle: {' -> '.join([*visiting, name])}")
        needs = depends(name)
        if needs is None:
            return
        visiting.append(name)
        for dependency in needs:
            visit(dependency)
        visiting.pop()
        order.append(name)

    for module in wanted:
        visit(module)
    return order


def kernel_modules(kernel: Kernel, wanted: Iterable[str] = MODULES) -> list[tuple[str, Path]]:
    """The module files to insert, in order."""
    files = kernel.module_files()
    builtin = kernel.builtin()

    def depends(name: str) -> list[str] | None:
        if name in files:
            return module_depends(files[name].read_bytes())
        if name in builtin:
            return None
        raise IsolationUnavailableError("microvm", f"guest image: kernel {kernel.version} has no module {name!r}")

    return [(name, files[name]) for name in load_order(wanted, depends)]


def init_script() -> bytes:
    """The initramfs's /init (package data)."""
    return resources.files("corral.backends.microvm").joinpath("init.sh").read_bytes()


def init_conf(modules: Iterable[str], port_name: str, agent_config: str, home: str, user: tuple[int, int],
              streams_port_name: str) -> bytes:
    """``/etc/init.conf``, the variables ``init.sh`` reads (shell syntax; values need no quoting)."""
    modules = list(modules)
    for value in (*modules, port_name, agent_config, home, streams_port_name):
        if not re.fullmatch(r"[A-Za-z0-9_./-]+", value):
            raise ValueError(f"unsafe value for init.conf: {value!r}")
    return (f'MODULES="{" ".join(modules)}"\nPORT_NAME={port_name}\nAGENT_CONFIG={agent_config}\n'
            f"HOME_DIR={home}\nUSER_ID={user[0]}:{user[1]}\nSTREAMS_PORT_NAME={streams_port_name}\n").encode()


def build_initramfs(busybox: bytes, modules: list[tuple[str, Path]], conf: bytes, target: Path) -> None:
    """Write the gzipped cpio: busybox, the modules, /init and its configuration, /dev/console."""
    archive = CpioWriter()
    for directory in ("bin", "dev", "etc", "proc", "sys", "ro", "rw", "newroot", "modules"):
        archive.directory(directory)
    archive.device("dev/console", stat.S_IFCHR | 0o600, _CONSOLE)
    archive.file("bin/busybox", busybox, 0o755)
    for name, path in modules:
        archive.file(f"modules/{name}.ko", path.read_bytes(), 0o644)
    archive.file("etc/init.conf", conf, 0o644)
    archive.file("init", init_script(), 0o755)
    target.write_bytes(gzip.compress(archive.finish(), compresslevel=1, mtime=0))


class CpioWriter:
    """A cpio archive in the "newc" format the kernel unpacks; owner root, mtime 0."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._inode = 0

    def directory(self, name: str, mode: int = 0o755) -> None:
        """Add a directory."""
        self._entry(name, stat.S_IFDIR | mode, b"")

    def file(self, name: str, data: bytes, mode: int) -> None:
        """Add a regular file."""
        self._entry(name, stat.S_IFREG | mode, data)

    def device(self, name: str, mode: int, major_minor: tuple[int, int]) -> None:
        """Add a device node (``mode`` includes ``S_IFCHR`` or ``S_IFBLK``)."""
        self._entry(name, mode, b"", major_minor)

    def finish(self) -> bytes:
        """The archive's bytes, with its trailer."""
        self._entry("TRAILER!!!", 0, b"", inode=0)
        return b"".join(self._parts)

    def _entry(self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0), inode: int | None = None) -> None:
        if inode is None:
            self._inode += 1
            inode = self._inode
        encoded = name.encode() + b"\0"
        fields = (inode, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._parts += [header, encoded, _pad(len(header) + len(encoded)), data, _pad(len(data))]


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)
