"""Where the warm daemon lives and whom it serves: only a private directory, only the same settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.cli.warm import address


def test_only_a_directory_of_this_user_closed_to_others_is_private(tmp_path: Path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert address.private_dir_problem(str(private)) is None
    private.chmod(0o750)
    assert "open to other users" in address.private_dir_problem(str(private))
    private.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(private)
    assert "not a directory" in address.private_dir_problem(str(link))  # never followed
    afile = tmp_path / "file"
    afile.write_text("")
    assert "not a directory" in address.private_dir_problem(str(afile))
    assert address.private_dir_problem(str(tmp_path / "missing")) is not None
    os.chown(private, 65534, 65534)
    assert "belongs to uid 65534" in address.private_dir_problem(str(private))


def test_the_daemon_directory_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(address.DIR_ENV, str(tmp_path / "a" / "daemon"))
    assert address.make_private_dir() is None
    assert (tmp_path / "a" / "daemon").stat().st_mode & 0o777 == 0o700
    assert address.socket_path() == str(tmp_path / "a" / "daemon" / "daemon.sock")


@pytest.mark.parametrize("value, enabled", [("off", False), ("0", False), (" False ", False), ("no", False),
                                             ("auto", True), ("", True), ("on", True)])
def test_the_daemon_is_turned_off_by_the_usual_words(value, enabled, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(address.MODE_ENV, value)
    monkeypatch.setenv(address.DIR_ENV, str(tmp_path))
    assert address.enabled() is enabled


def test_a_daemon_shares_corrals_settings_and_path_with_its_clients_but_not_its_own(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORRAL_SOMETHING", "1")
    monkeypatch.setenv("CORRAL_DAEMON_IDLE", "5")
    monkeypatch.setenv("UNRELATED", "x")
    chosen = address.settings()
    assert chosen["CORRAL_SOMETHING"] == "1" and chosen["PATH"] == os.environ["PATH"]
    assert "CORRAL_DAEMON_IDLE" not in chosen and "UNRELATED" not in chosen


@pytest.mark.parametrize("value, seconds", [("2.5", 2.5), ("0", address.DEFAULT_IDLE_S), ("x", address.DEFAULT_IDLE_S)])
def test_the_idle_limit(value, seconds, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(address.IDLE_ENV, value)
    assert address.idle_seconds() == seconds
