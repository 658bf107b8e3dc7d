"""The process probe remembers a started trial sandbox, and never lets that memory hide a broken level."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends.process import probe
from corral.backends.process.backend import ProcessBackend
from corral.errors import IsolationUnavailableError
from corral.host import service_dirs
from corral.host.data_dir import data_dir
from corral.host.runtime_dir import BWRAP_PATH, runtime_dir
from corral.models import SandboxSpec

pytestmark = [pytest.mark.sandbox, pytest.mark.levels("process")]


def _forget_cached_paths() -> None:
    probe.probe.cache_clear()
    runtime_dir.cache_clear()
    service_dirs._service_root.cache_clear()


@pytest.fixture
def fresh_data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A new data directory inside the current one (so the sandbox user can traverse it)."""
    path = Path(tempfile.mkdtemp(prefix="probe-test-", dir=data_dir()))
    path.chmod(0o755)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(path))
    monkeypatch.setattr(probe, "_remembered_trial", None)
    _forget_cached_paths()
    yield path
    monkeypatch.undo()
    _forget_cached_paths()
    shutil.rmtree(path, ignore_errors=True)


def test_a_started_trial_is_remembered_by_the_next_probe(fresh_data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    first = probe.probe()
    assert first.available and first.details["trial sandbox"] == "started"
    assert len(list((fresh_data_dir / "probes").iterdir())) == 1
    probe.probe.cache_clear()

    def no_trial(*args):
        raise AssertionError("the trial sandbox was started again")

    monkeypatch.setattr(probe, "_try_sandbox", no_trial)
    again = probe.probe()
    assert again.available and "remembered" in again.details["trial sandbox"]


def test_a_failed_trial_is_not_remembered(fresh_data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    runtime_dir()
    bwrap = next(fresh_data_dir.glob(f"runtime/*/{BWRAP_PATH}"))
    bwrap.chmod(0o644)  # not executable: bwrap cannot start
    result = probe.probe()
    assert not result.available and "trivial sandbox failed" in result.reason
    assert not (fresh_data_dir / "probes").exists() or not list((fresh_data_dir / "probes").iterdir())


async def test_a_start_that_fails_after_a_remembered_trial_probes_for_real(fresh_data_dir: Path):
    assert probe.probe().available  # the trial starts and is remembered
    probe.probe.cache_clear()
    assert "remembered" in probe.probe().details["trial sandbox"]
    # break the level in a way the remembered trial's key does not see (the file mode)
    bwrap = next(fresh_data_dir.glob(f"runtime/*/{BWRAP_PATH}"))
    bwrap.chmod(0o644)
    with pytest.raises(IsolationUnavailableError) as raised:
        await ProcessBackend().start(SandboxSpec())
    assert "process" in str(raised.value)
    assert not probe.probe().available  # the fresh result, not the remembered one
    assert not list((fresh_data_dir / "probes").iterdir())
