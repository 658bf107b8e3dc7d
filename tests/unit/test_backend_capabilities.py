"""Backend capabilities, and the test-only direct backend's place in the registry."""

from __future__ import annotations

import pytest
from support import direct_backend

from corral.backends import registry
from corral.backends.base import CAPABILITIES, ProbeResult
from corral.backends.microvm.backend import MicrovmBackend
from corral.backends.process.backend import ProcessBackend
from corral.errors import IsolationUnavailableError


@pytest.mark.parametrize("backend", [ProcessBackend(), MicrovmBackend(), direct_backend.DirectBackend()],
                         ids=lambda backend: backend.name)
def test_capabilities_are_known_names_and_memory_capture_follows_them(backend):
    assert backend.capabilities <= set(CAPABILITIES)
    assert backend.captures_memory == ("memory_snapshot" in backend.capabilities)


def test_only_the_microvm_captures_memory_and_the_direct_backend_confines_nothing():
    assert MicrovmBackend().captures_memory and not ProcessBackend().captures_memory
    assert direct_backend.DirectBackend().capabilities == {"pty"}


def test_auto_never_picks_the_direct_backend(monkeypatch):
    monkeypatch.setattr(registry, "_BACKENDS", {})
    monkeypatch.delenv("CORRAL_ISOLATION", raising=False)
    registry.names()  # the built-in levels
    for name in ("process", "microvm"):  # neither works: auto must fail rather than fall back to no isolation
        monkeypatch.setattr(registry._BACKENDS[name], "probe", lambda: ProbeResult(False, "not here"))
    direct_backend.register()
    assert "direct" in registry.names() and registry.resolve("direct").name == "direct"
    with pytest.raises(IsolationUnavailableError, match="no isolation level works"):
        registry.resolve("auto")
