"""The QEMU command line is a pure function of the VM's files and shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.backends.microvm.qemu import SECCOMP_SANDBOX, RamFile, VmFiles, VmShape, argv_fingerprint, qemu_argv
from corral.backends.microvm.snapshot import image_build, template_key

FILES = VmFiles(Path("/img/vmlinuz"), Path("/img/initramfs"), Path("/img/rootfs.ext4"), Path("/vm/agent.sock"),
                Path("/vm/qmp.sock"), Path("/vm/console.log"), Path("/vm/streams.sock"))
TCG = VmShape(memory_mb=352, vcpus=1, accel="tcg", tsc_khz=2600000, home_mb=74, tmp_mb=74, shm_mb=64)


def value(argv, flag):
    return argv[argv.index(flag) + 1]


def values(argv, flag):
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_a_bare_microvm_with_no_network_and_no_defaults():
    argv = qemu_argv("/usr/bin/qemu", FILES, TCG)
    assert value(argv, "-M") == "microvm,memory-backend=ram" and value(argv, "-m") == "352M"
    assert value(argv, "-object") == "memory-backend-ram,id=ram,size=352M" and value(argv, "-smp") == "1"
    for flag in ("-nodefaults", "-no-user-config", "-nographic", "-no-reboot"):
        assert flag in argv
    devices = values(argv, "-device")
    assert not any("net" in device for device in devices) and "-netdev" not in argv and "-nic" not in argv
    assert devices == ["virtio-blk-device,drive=root", "virtio-serial-device",
                       "virtserialport,chardev=agent,name=corral", "virtserialport,chardev=streams,name=corral-streams"]


def test_root_disk_is_read_only_and_the_agent_is_on_a_unix_socket():
    argv = qemu_argv("/usr/bin/qemu", FILES, TCG)
    assert "readonly=on" in value(argv, "-drive") and "file=/img/rootfs.ext4" in value(argv, "-drive")
    assert "socket,id=agent,path=/vm/agent.sock,server=on,wait=off" in values(argv, "-chardev")
    assert value(argv, "-qmp") == "unix:/vm/qmp.sock,server=on,wait=off"


def test_qemu_runs_under_its_own_seccomp_filter_unless_told_not_to():
    assert value(qemu_argv("q", FILES, TCG), "-sandbox") == SECCOMP_SANDBOX
    assert "spawn=deny" in SECCOMP_SANDBOX and "elevateprivileges=deny" in SECCOMP_SANDBOX
    assert "-sandbox" not in qemu_argv("q", FILES, TCG, seccomp=False)


def test_tcg_gets_the_tsc_frequency_and_the_tmpfs_sizes():
    argv = qemu_argv("q", FILES, TCG)
    assert value(argv, "-accel").startswith("tcg,") and "+rdrand" in value(argv, "-cpu")
    kernel_args = value(argv, "-append").split()
    assert "tsc_early_khz=2600000" in kernel_args and "panic=-1" in kernel_args
    assert "tsc=reliable" in kernel_args  # no clocksource watchdog: it would drop the guest to 4 ms jiffies
    assert {"corral.home_mb=74", "corral.tmp_mb=74", "corral.shm_mb=64"} <= set(kernel_args)


def test_kvm_uses_the_host_cpu_without_nested_virtualization():
    argv = qemu_argv("q", FILES, VmShape(memory_mb=512, vcpus=2, accel="kvm"))
    assert value(argv, "-accel") == "kvm" and value(argv, "-cpu") == "host,-vmx,-svm"
    assert not any(arg.startswith(("tsc_early_khz", "tsc=")) for arg in value(argv, "-append").split())


def test_unknown_accelerator_is_refused():
    with pytest.raises(ValueError):
        qemu_argv("q", FILES, VmShape(memory_mb=512, vcpus=1, accel="hvf"))


def test_template_source_shares_its_ram_file_and_clones_map_it_privately():
    source = qemu_argv("q", FILES, TCG, ram_file=RamFile(Path("/t/ram"), shared=True))
    clone = qemu_argv("q", FILES, TCG, ram_file=RamFile(Path("/t/ram"), shared=False), incoming=True)
    assert value(source, "-M") == "microvm,memory-backend=ram"
    assert value(source, "-object") == "memory-backend-file,id=ram,size=352M,mem-path=/t/ram,share=on"
    assert value(clone, "-object").endswith("share=off") and value(clone, "-incoming") == "defer"
    assert "-incoming" not in source


def test_templates_are_keyed_by_everything_that_shapes_the_vm():
    def key(build="image1", qemu="qemu1", shape=TCG, argv=None):
        return template_key(build, qemu, shape, argv or argv_fingerprint(shape))

    base = key()
    assert base == key() and base.startswith("image1-")
    assert base != key(build="image2") and base != key(qemu="qemu2") and base != key(argv="-cpu other")
    for change in (dict(memory_mb=353), dict(vcpus=2), dict(home_mb=75), dict(tsc_khz=1)):
        assert base != key(shape=VmShape(**{**TCG.__dict__, **change}))


def test_the_fingerprint_is_the_restore_command_line_without_paths():
    fingerprint = argv_fingerprint(TCG)
    assert "-cpu" in fingerprint and "-incoming defer" in fingerprint and "/vm/" not in fingerprint


def test_a_rebuilt_image_is_a_new_build(tmp_path):
    rootfs = tmp_path / "rootfs.ext4"
    rootfs.write_bytes(b"1")
    first = image_build("key", rootfs)
    rootfs.unlink()
    rootfs.write_bytes(b"2")  # a forced rebuild: same key, new file
    assert first.startswith("key-") and image_build("key", rootfs) != first
