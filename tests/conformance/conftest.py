"""The conformance suite: what every isolation level does the same way, one test per behaviour.

Every test runs once per level in :data:`LEVELS` (the test-only direct backend included: the
agent as a plain host process, see tests/support/direct_backend.py). A level that does not
work here skips with its probe's reason (what ``corral doctor`` says). A test marked
``@pytest.mark.needs("pty", ...)`` skips, with the capability's description, on a level whose
backend lacks one of those capabilities (:data:`corral.backends.base.CAPABILITIES`).

The microVM runs under TCG emulation on hosts without KVM: the tests share one sandbox per
module and level, and those that need more sandboxes of their own are marked ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import direct_backend
from support.levels import backend_or_skip

import corral
from corral.backends.base import CAPABILITIES

#: The isolation levels the suite runs on.
LEVELS = ("process", "microvm", direct_backend.NAME)
#: Environment every module's shared sandbox starts with.
SANDBOX_ENV = {"CONFORMANCE": "every level"}


@pytest.fixture(scope="module", params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    """The isolation level under test (skipped with the probe's reason where it does not work)."""
    backend_or_skip(request.param)
    return request.param


@pytest.fixture(autouse=True)
def _capabilities(request: pytest.FixtureRequest) -> None:
    """Skip, with the reason, on a level that lacks a capability the test ``needs``."""
    marker = request.node.get_closest_marker("needs")
    if marker is None:
        return
    level_name = request.getfixturevalue("level")
    backend = backend_or_skip(level_name)
    for capability in marker.args:
        if capability not in CAPABILITIES:
            raise pytest.UsageError(f"unknown capability {capability!r}; known: {', '.join(sorted(CAPABILITIES))}")
        if capability not in backend.capabilities:
            pytest.skip(f"isolation={level_name!r} lacks {capability!r} ({CAPABILITIES[capability]})")


@pytest.fixture(scope="module")
def sandbox(level: str) -> Iterator[corral.Sandbox]:
    """One sandbox per module and level, shared by its tests (each uses names of its own)."""
    with corral.Sandbox(isolation=level, env=SANDBOX_ENV, timeout=60) as shared:
        yield shared
