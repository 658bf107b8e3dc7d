"""The process probe's memory of started trial sandboxes: what its key depends on (no sandbox started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.backends.process import probe


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "bwrap"
    path.write_bytes(b"#!/bin/sh\n")
    return path


def test_the_same_inputs_give_the_same_record(data_dir: Path, binary: Path):
    argv = [str(binary), "--seccomp", "7", "/bin/true"]
    first = probe._trial_record(argv, 7, binary)
    assert first is not None and first.parent == data_dir / "probes"
    # the seccomp fd number differs between processes; it is not part of the key
    assert probe._trial_record([str(binary), "--seccomp", "9", "/bin/true"], 9, binary) == first


def test_any_changed_input_gives_another_record(data_dir: Path, binary: Path, monkeypatch: pytest.MonkeyPatch):
    argv = [str(binary), "--seccomp", "7", "/bin/true"]
    first = probe._trial_record(argv, 7, binary)
    assert probe._trial_record([*argv[:-1], "/bin/false"], 7, binary) != first
    binary.write_bytes(b"#!/bin/sh\nexit 0\n")  # a reinstalled bwrap
    second = probe._trial_record(argv, 7, binary)
    assert second != first
    monkeypatch.setattr(probe.seccomp, "filter_program", lambda: b"another filter")
    assert probe._trial_record(argv, 7, binary) != second


def test_remembering_a_trial_replaces_older_records(data_dir: Path):
    old = data_dir / "probes" / "process-trial-old"
    old.parent.mkdir()
    old.touch()
    new = data_dir / "probes" / "process-trial-new"
    probe._remember(new)
    assert sorted(os.listdir(data_dir / "probes")) == ["process-trial-new"]


def test_no_record_without_a_binary_to_key_it_by(data_dir: Path, tmp_path: Path):
    missing = tmp_path / "missing"
    assert probe._trial_record([str(missing), "/bin/true"], 3, missing) is None
