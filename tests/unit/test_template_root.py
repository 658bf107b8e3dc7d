"""Where microVM memory templates live: one folder per corral data directory."""

from __future__ import annotations

from corral.backends.microvm.snapshot import template_root


def test_two_data_directories_never_share_a_template_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CORRAL_TEMPLATE_DIR", raising=False)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "one"))
    first = template_root()
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "two"))
    second = template_root()
    assert first != second
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "one"))
    assert template_root() == first  # stable: a restart finds its templates again


def test_an_explicit_template_folder_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_TEMPLATE_DIR", str(tmp_path / "templates"))
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "one"))
    assert template_root() == tmp_path / "templates"
