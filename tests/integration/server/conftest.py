"""A real ``corral serve`` on 127.0.0.1, started by the tests, and clients for it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverprocess import ServerProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The service is the same on every isolation level: its tests run on the process sandbox (the
    microVM is covered by the API, attack and network suites), except the terminal's, whose child
    must be confined like any other on every level."""
    for item in items:
        if "/server/" in str(item.path) and item.path.name != "test_pty.py" and not item.get_closest_marker("levels"):
            item.add_marker(pytest.mark.levels("process"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a test module."""
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--max-sandboxes-per-key", "6", "--max-streams", "2",
                            "--max-file-mb", "24")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own (for restarts and crashes)."""
    process = ServerProcess(tmp_path)
    process.start()
    yield process
    process.stop(signal.SIGKILL)


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of the module's server with its API key."""
    with server.client() as client:
        yield client


@pytest.fixture(params=["local", "remote"])
def where(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> dict:
    """Keyword arguments that pick the mode: none for local, server= and api_key= for remote."""
    if request.param == "local":
        monkeypatch.setenv("CORRAL_LOCAL_DIR", str(tmp_path / "local"))
        return {}
    server = request.getfixturevalue("server")
    return {"server": server.url, "api_key": server.key}
