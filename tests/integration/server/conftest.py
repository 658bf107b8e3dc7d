"""A real ``corral serve`` on 127.0.0.1, started by the tests, and clients for it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverprocess import ServerProcess
from support import direct_backend


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The service is the same on every isolation level: its tests run on the process sandbox (the
    microVM is covered by the API, attack and network suites), except the terminal's, whose child
    must be confined like any other on every level."""
    for item in items:
        if "/server/" in str(item.path) and item.path.name != "test_pty.py" and not item.get_closest_marker("levels"):
            item.add_marker(pytest.mark.levels("process"))


def _module_server(tmp_path_factory: pytest.TempPathFactory, direct: bool) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--max-sandboxes-per-key", "6", "--max-streams", "2",
                            "--max-file-mb", "24", direct=direct)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a test module; on the direct backend where the module is marked ``direct``."""
    yield from _module_server(tmp_path_factory, request.node.get_closest_marker("direct") is not None)


@pytest.fixture(scope="module")
def direct_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on the direct backend, for the tests marked ``direct`` in a module that is not."""
    if request.node.get_closest_marker("direct") is not None:
        yield request.getfixturevalue("server")
    else:
        yield from _module_server(tmp_path_factory, True)


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
    """Keyword arguments that pick the mode: none for local, server= and api_key= for remote.

    A test marked ``direct`` gets its sandboxes from the direct backend in both modes.
    """
    direct = request.node.get_closest_marker("direct") is not None
    if request.param == "local":
        monkeypatch.setenv("CORRAL_LOCAL_DIR", str(tmp_path / "local"))
        if direct:
            direct_backend.register()
            monkeypatch.setenv("CORRAL_ISOLATION", direct_backend.NAME)
        return {}
    server = request.getfixturevalue("direct_server" if direct else "server")
    return {"server": server.url, "api_key": server.key}
