"""The cheap check ``isolation="auto"`` makes before it probes the microVM level (no VM is started)."""

from __future__ import annotations

import shutil

import pytest

from corral.backends.microvm import accel, probe
from corral.backends.microvm.backend import MicrovmBackend

pytestmark = pytest.mark.skipif(shutil.which(probe.QEMU, path="/usr/bin:/usr/local/bin:/bin") is None,
                                reason="QEMU is not installed")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    return tmp_path


def test_only_a_cached_kvm_answer_makes_the_level_a_candidate():
    binary = probe.qemu_binary()
    assert not MicrovmBackend().may_be_hardware_isolated()  # never probed: not a candidate
    accel._write_cache(accel._cache_path(binary), accel.AccelChoice("tcg", "a guest did not boot under KVM"))
    assert not MicrovmBackend().may_be_hardware_isolated()
    accel._write_cache(accel._cache_path(binary), accel.AccelChoice("kvm", "the guest booted under KVM"))
    assert MicrovmBackend().may_be_hardware_isolated()


def test_no_qemu_is_no_candidate(monkeypatch):
    def missing() -> str:
        raise FileNotFoundError("qemu-system-x86_64 is not installed")

    monkeypatch.setattr(probe, "qemu_binary", missing)
    assert not probe.kvm_proven()
