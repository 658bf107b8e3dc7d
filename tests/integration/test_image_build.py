"""Builds the real microVM guest image once (apt, the Debian mirror, mke2fs) and inspects it."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends.microvm import guest, image
from corral.errors import InvalidInputError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(image.image_problem() is not None, reason=f"guest image cannot be built here: {image.image_problem()}"),
    pytest.mark.skipif(shutil.which("debugfs", path="/usr/sbin:/sbin") is None, reason="debugfs (e2fsprogs) is needed"),
]


@pytest.fixture
def isolation_level() -> str:
    """The image does not depend on an isolation level: no need to run once per level."""
    return "none"


@pytest.fixture(scope="session")
def built() -> tuple[image.GuestImage, float]:
    """The image every microVM test boots (``scripts/test.sh`` builds it first; built here otherwise)."""
    image._memo.clear()
    started = time.perf_counter()
    return image.ensure_image(), time.perf_counter() - started


@pytest.fixture
def data_dir(built: tuple[image.GuestImage, float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch data directory holding a linked copy of the image (removing it leaves the real one alone)."""
    source = built[0].directory
    target = tmp_path / "images" / source.name
    target.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:  # another file system
            shutil.copy2(path, target / path.name)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    image._memo.clear()
    yield tmp_path
    image._memo.clear()


def _debugfs(rootfs: Path, command: str) -> str:
    return subprocess.run([shutil.which("debugfs", path="/usr/sbin:/sbin"), "-R", command, str(rootfs)],
                          capture_output=True, text=True, check=True).stdout


def test_second_call_is_a_cache_hit(built: tuple[image.GuestImage, float]) -> None:
    first, _ = built
    image._memo.clear()  # the on-disk lookup, as in a fresh process
    started = time.perf_counter()
    again = image.ensure_image()
    assert time.perf_counter() - started < 0.3
    assert again == first
    assert image.ensure_image() is again  # memoized


def test_image_files_are_world_readable(built: tuple[image.GuestImage, float]) -> None:
    found = built[0]
    assert {path.name for path in found.directory.iterdir()} == {
        "vmlinuz", "initramfs.cpio.gz", "rootfs.ext4", "packages.lock", "image.json"}
    assert found.directory.stat().st_mode & 0o005 == 0o005
    for path in found.directory.iterdir():
        assert path.stat().st_mode & 0o004, path
    assert found.kernel_version.endswith("-cloud-amd64")
    assert found.size_bytes > 100 * 2**20


def test_initramfs_has_init_busybox_and_the_modules(built: tuple[image.GuestImage, float]) -> None:
    archive = gzip.decompress(built[0].initramfs.read_bytes())
    for name in ("init", "bin/busybox", "etc/init.conf", "dev/console", "modules/virtio_ring.ko",
                 "modules/virtio_mmio.ko", "modules/virtio_blk.ko", "modules/virtio_console.ko", "modules/overlay.ko"):
        assert name.encode() + b"\0" in archive, name
    assert f"PORT_NAME={guest.AGENT_PORT_NAME}\n".encode() in archive


def test_rootfs_has_the_runtimes_and_the_agent(built: tuple[image.GuestImage, float]) -> None:
    rootfs = built[0].rootfs
    usr_bin = _debugfs(rootfs, "ls -l /usr/bin")
    for program in ("python3", "node", "bash", "dash", "sh", "awk", "grep", "tar", "ps", "pip3"):
        assert f" {program}\n" in usr_bin + "\n" or f" {program} " in usr_bin, program
    config = _debugfs(rootfs, f"cat {guest.AGENT_CONFIG_PATH}")
    assert json.loads(config) == guest.agent_config()
    assert "agent.py" in _debugfs(rootfs, "ls /opt/corral")
    assert "loop.cpython-311.pyc" in _debugfs(rootfs, "ls /opt/corral/corral/agent/__pycache__")
    assert "decoder.cpython-311.pyc" in _debugfs(rootfs, "ls /usr/lib/python3.11/json/__pycache__")
    home = _debugfs(rootfs, "stat /home/user")
    assert "User:  1000" in home and "Group:  1000" in home
    assert "BEGIN CERTIFICATE" in _debugfs(rootfs, "cat /etc/ssl/certs/ca-certificates.crt")
    assert "corral" in _debugfs(rootfs, "ls /run")


def test_list_then_remove(built: tuple[image.GuestImage, float], data_dir: Path) -> None:
    key = built[0].key
    assert [found.key for found in image.list_images()] == [key]
    image.remove_image(key)
    assert image.list_images() == []
    assert not (data_dir / "images" / key).exists() and built[0].directory.exists()  # only the copy went
    with pytest.raises(InvalidInputError, match="no guest image"):
        image.remove_image(key)
