"""A real ``corral serve`` on 127.0.0.1 for the official E2B SDKs, pointed at it by environment variables only."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from serverprocess import ServerProcess  # noqa: E402 - the server tests' helper, found through the path above


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The E2B layer only translates: its tests run on the process sandbox unless they ask for more."""
    for item in items:
        if "/e2b/" in str(item.path) and not item.get_closest_marker("levels"):
            item.add_marker(pytest.mark.levels("process"))
            item.add_marker(pytest.mark.sandbox)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a test module, process isolation."""
    process = ServerProcess(tmp_path_factory.mktemp("e2b-server"), "--isolation", "process",
                            "--max-sandboxes-per-key", "8", "--max-file-mb", "24")
    process.start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def e2b_env(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    """E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL name the test server, as a user sets them."""
    monkeypatch.setenv("E2B_API_KEY", server.key)
    monkeypatch.setenv("E2B_API_URL", server.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
    for name in ("E2B_DEBUG", "E2B_DOMAIN", "E2B_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return server
