"""The guest image builder's pure parts: apt output, module order, the cpio writer, the keys."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

import pytest

from corral.backends.microvm import apt_packages, image, initramfs
from corral.backends.microvm.apt_packages import Package
from corral.errors import InvalidInputError, IsolationUnavailableError

SIMULATION = """\
Reading package lists...
NOTE: This is only a simulation!
Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])
Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []
Inst busybox-static (1:1.35.0-4+deb12u1+b1 Debian:12.15/oldstable [amd64])
Inst linux-image-6.1.0-56-cloud-amd64 (6.1.192-2 Debian-Security:12/oldstable-security [amd64])
Inst tzdata [2024a-0] (2025b-0+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [all])
Conf gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])
"""


def test_simulation_output_becomes_packages_in_order() -> None:
    assert apt_packages.parse_simulation(SIMULATION) == [
        Package("gcc-12-base", "12.2.0-14+deb12u1", "amd64"),
        Package("libc6", "2.36-9+deb12u14", "amd64"),
        Package("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64"),
        Package("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", "amd64"),
        Package("tzdata", "2025b-0+deb12u1", "all"),
    ]


def test_a_package_from_outside_debian_is_refused() -> None:
    line = "Inst nodejs (20.19.2-1nodesource1 Node Source:nodistro [amd64])\n"
    with pytest.raises(IsolationUnavailableError, match="not from Debian"):
        apt_packages.parse_simulation(line)


def test_deb_file_name_quotes_the_epoch_as_apt_does() -> None:
    package = Package("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64")
    assert package.deb_name == "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
    assert package.spec == "busybox-static=1:1.35.0-4+deb12u1+b1"


def _modinfo(depends: str) -> bytes:
    return b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0intree=Y\0name=x\0"


def test_module_depends_are_read_from_modinfo() -> None:
    assert initramfs.module_depends(_modinfo("virtio,virtio_ring")) == ["virtio", "virtio_ring"]
    assert initramfs.module_depends(_modinfo("crc32c-intel")) == ["crc32c_intel"]
    assert initramfs.module_depends(_modinfo("")) == []
    assert initramfs.module_depends(b"no modinfo at all") == []


GRAPH = {"virtio_blk": ["virtio", "virtio_ring"], "virtio": [], "virtio_ring": [], "virtio_mmio": ["virtio", "virtio_ring"],
         "overlay": [], "virtio_console": ["virtio", "virtio_ring"], "ext4": None}


def test_load_order_puts_dependencies_first_once() -> None:
    order = initramfs.load_order(["virtio_mmio", "virtio_blk", "virtio_console", "overlay"], GRAPH.get)
    assert order == ["virtio", "virtio_ring", "virtio_mmio", "virtio_blk", "virtio_console", "overlay"]


def test_load_order_skips_builtin_modules_and_normalizes_dashes() -> None:
    graph = {**GRAPH, "jbd2_user": ["ext4", "virtio-ring"]}
    assert initramfs.load_order(["jbd2-user"], graph.get) == ["virtio_ring", "jbd2_user"]


def test_load_order_reports_a_cycle() -> None:
    with pytest.raises(IsolationUnavailableError, match="cycle: a -> b -> a"):
        initramfs.load_order(["a"], {"a": ["b"], "b": ["a"]}.get)


def test_kernel_modules_from_an_extracted_tree(tmp_path: Path) -> None:
    modules = tmp_path / "lib/modules/6.1.0-test"
    (modules / "kernel/drivers/virtio").mkdir(parents=True)
    (tmp_path / "boot").mkdir()
    (modules / "kernel/drivers/virtio/virtio_mmio.ko").write_bytes(_modinfo("virtio"))
    (modules / "kernel/drivers/virtio/virtio.ko").write_bytes(_modinfo(""))
    (modules / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n")
    kernel = initramfs.Kernel.from_tree(tmp_path)
    assert kernel.version == "6.1.0-test"
    names = [name for name, _ in initramfs.kernel_modules(kernel, ["virtio_mmio", "overlay"])]
    assert names == ["virtio", "virtio_mmio"]
    with pytest.raises(IsolationUnavailableError, match="no module 'virtio_blk'"):
        initramfs.kernel_modules(kernel, ["virtio_blk"])


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, content, rdev) of a newc archive (a reader independent of the writer)."""
    entries = {}
    offset = 0
    while True:
        assert data[offset:offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i: offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, name_size = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_start = offset + 110
        name = data[name_start:name_start + name_size - 1].decode()
        content_start = name_start + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[content_start:content_start + size], rdev)
        offset = content_start + size + (-size % 4)


def test_initramfs_holds_busybox_modules_init_and_console(tmp_path: Path) -> None:
    module = tmp_path / "virtio.ko"
    module.write_bytes(b"odd length module")
    target = tmp_path / "initramfs.cpio.gz"
    conf = initramfs.init_conf(["virtio"], "corral", "/opt/corral/agent.json", "/home/user", (1000, 1000), "corral-streams")
    initramfs.build_initramfs(b"busybox!", [("virtio", module)], conf, target)
    entries = read_cpio(gzip.decompress(target.read_bytes()))
    assert entries["bin/busybox"] == (stat.S_IFREG | 0o755, b"busybox!", (0, 0))
    assert entries["modules/virtio.ko"][1] == b"odd length module"
    assert entries["init"][1] == initramfs.init_script()
    assert entries["init"][0] & 0o111
    assert entries["dev/console"] == (stat.S_IFCHR | 0o600, b"", (5, 1))
    assert stat.S_ISDIR(entries["newroot"][0])
    assert b'MODULES="virtio"\nPORT_NAME=corral\n' in entries["etc/init.conf"][1]


def test_init_conf_refuses_values_that_need_quoting() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        initramfs.init_conf(["virtio"], "cor ral", "/opt/corral/agent.json", "/home/user", (1000, 1000), "corral-streams")


def test_init_reads_its_settings_and_sizes_tmpfs_from_the_kernel_command_line() -> None:
    script = initramfs.init_script().decode()
    assert ". /etc/init.conf" in script and "/proc/cmdline" in script
    for option in ("corral.home_mb=", "corral.tmp_mb=", "corral.shm_mb="):
        assert option in script
    for size in ("size=${home_mb}m", "size=${tmp_mb}m", "size=${shm_mb}m"):
        assert size in script
    assert "poweroff -f" in script and "overcommit_memory" in script


RESOLUTION = image.Resolution(
    kernel=Package("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", "amd64"),
    busybox=Package("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64"),
    rootfs=(Package("libc6", "2.36-9+deb12u14", "amd64"), Package("python3", "3.11.2-1+b1", "amd64")),
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    return tmp_path


def test_lock_text_names_every_package_with_its_role() -> None:
    assert RESOLUTION.lock_text().splitlines() == [
        "kernel linux-image-6.1.0-56-cloud-amd64=6.1.192-2 amd64",
        "initramfs busybox-static=1:1.35.0-4+deb12u1+b1 amd64",
        "rootfs libc6=2.36-9+deb12u14 amd64",
        "rootfs python3=3.11.2-1+b1 amd64",
    ]


def test_image_key_is_stable_and_changes_with_each_input(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = image.image_key(RESOLUTION, "3.11.2")
    assert key == image.image_key(RESOLUTION, "3.11.2")
    assert len(key) == 16
    newer = image.Resolution(RESOLUTION.kernel, RESOLUTION.busybox,
                             (RESOLUTION.rootfs[0], Package("python3", "3.11.2-1+b2", "amd64")))
    changed = {image.image_key(newer, "3.11.2"), image.image_key(RESOLUTION, "3.11.4")}
    monkeypatch.setattr(image.initramfs, "init_script", lambda: b"#!/bin/sh\n")
    changed.add(image.image_key(RESOLUTION, "3.11.2"))
    monkeypatch.undo()
    monkeypatch.setattr(image.guest, "agent_config", lambda: {"home": "/home/other"})
    changed.add(image.image_key(RESOLUTION, "3.11.2"))
    monkeypatch.undo()
    monkeypatch.setattr(image, "BUILDER_VERSION", image.BUILDER_VERSION + 1)
    changed.add(image.image_key(RESOLUTION, "3.11.2"))
    assert key not in changed
    assert len(changed) == 5


def test_inputs_key_follows_the_apt_index(data_dir: Path) -> None:
    index = [("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4", 18840233, 1)]
    assert image.inputs_key(index) == image.inputs_key(list(index))
    assert image.inputs_key(index) != image.inputs_key([(index[0][0], index[0][1], 2)])


def _fake_image(data_dir: Path, key: str, created: float) -> Path:
    directory = data_dir / "images" / key
    directory.mkdir(parents=True)
    (directory / image.METADATA_FILE).write_text(
        f'{{"kernel_version": "6.1.0-test", "size_bytes": 42, "created": {created}}}')
    return directory


def test_a_cached_image_is_found_without_apt(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.apt_packages, "index_identity", lambda: [("Packages", 1, 1)])
    monkeypatch.setattr(image, "_resolve_and_build", lambda *args: pytest.fail("must not resolve or build"))
    image._memo.clear()
    _fake_image(data_dir, "0123456789abcdef", 1.0)
    image._remember(image.inputs_key([("Packages", 1, 1)]), "0123456789abcdef")
    found = image.ensure_image()
    assert found.key == "0123456789abcdef"
    assert found.rootfs == data_dir / "images/0123456789abcdef/rootfs.ext4"
    assert found.kernel_version == "6.1.0-test"
    image._memo.clear()


def test_list_and_remove(data_dir: Path) -> None:
    _fake_image(data_dir, "aaaaaaaaaaaaaaaa", 1.0)
    _fake_image(data_dir, "bbbbbbbbbbbbbbbb", 2.0)
    image._remember("someinputs", "aaaaaaaaaaaaaaaa")
    assert [found.key for found in image.list_images()] == ["bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa"]
    image.remove_image("aaaaaaaaaaaaaaaa")
    assert [found.key for found in image.list_images()] == ["bbbbbbbbbbbbbbbb"]
    assert not (data_dir / "images/inputs/someinputs").exists()
    for bad in ("aaaaaaaaaaaaaaaa", "inputs", "../images", ".lock"):
        with pytest.raises(InvalidInputError, match="no guest image"):
            image.remove_image(bad)


def test_cli_lists_and_removes_images(data_dir: Path) -> None:
    from typer.testing import CliRunner

    from corral.cli import app

    _fake_image(data_dir, "cccccccccccccccc", 1.0)
    runner = CliRunner()
    listed = runner.invoke(app, ["image", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "cccccccccccccccc" in listed.output and "6.1.0-test" in listed.output
    assert runner.invoke(app, ["image", "rm", "cccccccccccccccc"]).exit_code == 0
    unknown = runner.invoke(app, ["image", "rm", "cccccccccccccccc"])
    assert unknown.exit_code == 3
    assert "no guest image" in unknown.output
