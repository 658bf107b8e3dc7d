"""The isolation-level registry and the auto policy (no sandbox is started: probes are faked)."""

from __future__ import annotations

import pytest

from corral.backends import registry
from corral.backends.base import Backend, ProbeResult
from corral.errors import InvalidInputError, IsolationUnavailableError


class FakeBackend(Backend):
    def __init__(self, name: str, result: ProbeResult):
        self.name = name
        self.result = result
        self.probes = 0
        self.hardware_possible = True

    def probe(self) -> ProbeResult:
        self.probes += 1
        return self.result

    def may_be_hardware_isolated(self) -> bool:
        return self.hardware_possible

    async def start(self, spec):  # pragma: no cover - never started here
        raise AssertionError


@pytest.fixture
def backends(monkeypatch):
    fakes = {
        "process": FakeBackend("process", ProbeResult(True, "works")),
        "microvm": FakeBackend("microvm", ProbeResult(True, "works under TCG only", hardware_isolated=False)),
    }
    monkeypatch.setattr(registry, "_BACKENDS", dict(fakes))
    monkeypatch.delenv("CORRAL_ISOLATION", raising=False)
    return fakes


def test_auto_never_picks_an_emulated_level(backends):
    assert registry.resolve("auto").name == "process"


def test_auto_prefers_hardware_isolation(backends):
    backends["microvm"].result = ProbeResult(True, "KVM boots", hardware_isolated=True)
    assert registry.resolve("auto").name == "microvm"


def test_auto_does_not_probe_a_level_that_cannot_be_hardware_isolated(backends):
    backends["microvm"].result = ProbeResult(True, "KVM boots", hardware_isolated=True)
    backends["microvm"].hardware_possible = False
    assert registry.resolve("auto").name == "process"
    assert backends["microvm"].probes == 0
    assert registry.resolve("microvm").name == "microvm"  # by name it is still probed and used


def test_unavailable_level_says_why(backends):
    backends["microvm"].result = ProbeResult(False, "no /dev/kvm and no qemu")
    with pytest.raises(IsolationUnavailableError, match="no /dev/kvm and no qemu"):
        registry.resolve("microvm")


def test_unknown_level_and_pinned_auto(backends, monkeypatch):
    with pytest.raises(InvalidInputError, match="unknown isolation level"):
        registry.resolve("gvisor")
    monkeypatch.setenv("CORRAL_ISOLATION", "microvm")
    assert registry.resolve("auto").name == "microvm"
    assert registry.available() == ["microvm", "process"]
