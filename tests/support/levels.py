"""Isolation levels in tests: a level that does not work here skips with its probe's reason."""

from __future__ import annotations

import pytest

from corral.backends import registry
from corral.backends.base import Backend
from support import direct_backend


def backend_or_skip(level: str) -> Backend:
    """The backend of ``level``; skips the test with the probe's own reason (what ``corral doctor``
    says) when the level does not work here. ``direct`` registers the test-only direct backend."""
    if level == direct_backend.NAME:
        direct_backend.register()
    result = registry.probe_all().get(level)
    if result is None:
        pytest.skip(f"isolation={level!r} is not a registered level (choose from {', '.join(registry.names())})")
    if not result.available:
        pytest.skip(f"isolation={level!r} unavailable here: {result.reason}")
    return registry.resolve(level)
