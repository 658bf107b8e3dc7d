"""Shared test configuration: sandbox tests are skipped with the probe's reason where they cannot run.

Tests marked ``direct`` run their sandboxes on the test-only direct backend (tests/support/), which
needs no isolation from the host, so they run everywhere.
"""

from __future__ import annotations

import os

import pytest

from corral.backends import registry

#: Every `corral run` of the tests runs in its own process; only the warm daemon's tests start a daemon
#: (in a directory of their own: tests/integration/test_warm_daemon.py).
os.environ["CORRAL_DAEMON"] = "off"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("sandbox") for item in items):
        return
    result = registry.probe_all()["process"]
    if result.available:
        return
    skip = pytest.mark.skip(reason=f"process sandbox unavailable here: {result.reason}")
    for item in items:
        if item.get_closest_marker("sandbox") and not item.get_closest_marker("direct"):  # direct: no isolation needed
            item.add_marker(skip)
