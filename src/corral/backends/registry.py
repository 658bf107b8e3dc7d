"""Backends by name, and the ``isolation="auto"`` policy.

``auto`` picks the strongest level that works here: a backend whose probe
proves hardware isolation first, then the process sandbox. A level that is
only emulated (a microVM under TCG) is used only when asked for by name, and
``auto`` does not even probe a level that says it cannot be hardware isolated
here (:meth:`Backend.may_be_hardware_isolated`, a cheap check).
A deployment can pin what ``auto`` means with ``CORRAL_ISOLATION=<level>``.
"""

from __future__ import annotations

import os

from corral.backends.base import Backend, ProbeResult
from corral.errors import InvalidInputError, IsolationUnavailableError

_BACKENDS: dict[str, Backend] = {}
#: Preference for ``auto``, strongest first.
_AUTO_ORDER = ("microvm", "process")


def register(backend: Backend) -> None:
    """Make ``backend`` available under ``backend.name``."""
    _BACKENDS[backend.name] = backend


def names() -> list[str]:
    """Registered isolation levels."""
    _load_builtin()
    return sorted(_BACKENDS)


def available() -> list[str]:
    """Levels whose probe says they work here."""
    return [name for name, result in probe_all().items() if result.available]


def probe_all() -> dict[str, ProbeResult]:
    """Probe every registered backend."""
    _load_builtin()
    return {name: backend.probe() for name, backend in sorted(_BACKENDS.items())}


def resolve(isolation: str) -> Backend:
    """The backend for ``isolation`` (a name or ``"auto"``) that works here, or raise."""
    _load_builtin()
    pinned = os.environ.get("CORRAL_ISOLATION", "auto")
    if isolation == "auto" and pinned != "auto":
        return resolve(pinned)
    if isolation == "auto":
        for name in _AUTO_ORDER:
            backend = _BACKENDS.get(name)
            if backend is None or (name != "process" and not backend.may_be_hardware_isolated()):
                continue
            result = backend.probe()
            if result.available and (result.hardware_isolated or name == "process"):
                return backend
        reasons = "; ".join(f"{name}: {backend.probe().reason}" for name, backend in sorted(_BACKENDS.items()))
        raise IsolationUnavailableError("auto", f"no isolation level works on this host ({reasons})")
    backend = _BACKENDS.get(isolation)
    if backend is None:
        raise InvalidInputError(
            f"unknown isolation level {isolation!r}; choose one of: auto, {', '.join(sorted(_BACKENDS))}"
        )
    result = backend.probe()
    if not result.available:
        raise IsolationUnavailableError(isolation, result.reason)
    return backend


def _load_builtin() -> None:
    if "process" not in _BACKENDS:
        from corral.backends.microvm.backend import MicrovmBackend
        from corral.backends.process.backend import ProcessBackend

        register(ProcessBackend())
        register(MicrovmBackend())
