"""corral: run untrusted Python, JavaScript and shell code in sandboxes you host yourself.

Quick start::

    import corral
    corral.run("print(1)").stdout                      # '1\\n'
    with corral.Sandbox() as sb:                       # a session: state is kept
        sb.run("x = 41"); sb.run("print(x + 1)")

``Sandbox``/``Pool``/``run`` are synchronous; ``AsyncSandbox``/``AsyncPool``/``arun``
are the same API for asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from corral import errors
from corral.errors import (
    CorralError,
    FileOperationError,
    InvalidInputError,
    IsolationUnavailableError,
    PackageInstallError,
    OutcomeUnknownError,
    PermanentError,
    SandboxClosedError,
    SandboxCrashedError,
    SandboxStartError,
    TransientError,
)
from corral.version import __version__ as __version__

if TYPE_CHECKING:
    from corral.models import (
        BackgroundCommand,
        ExecutionResult,
        FileEntry,
        FileEvent,
        FileInfo,
        ProcessInfo,
        Limits,
        OutputEvent,
        SandboxSpec,
        TimingBreakdown,
    )
    from corral.network import EgressDecision, ExposedPort, Network, PortMapping
    from corral.oneshot import arun
    from corral.pool import AsyncPool
    from corral.public import AsyncSandbox, Sandbox
    from corral.batch.items import BatchItem, TestCase
    from corral.batch.many import arun_many
    from corral.batch.verdicts import BatchResult, TestResult
    from corral.commands import AsyncCommandHandle
    from corral.sync import Pool, run, run_many
    from corral.sync_commands import CommandHandle

#: Public names imported on first use (PEP 562), so ``import corral`` does not pay for
#: pydantic and asyncio until a model or the API is needed: name -> module that defines it.
_LAZY = {
    **dict.fromkeys(
        ("BackgroundCommand", "ExecutionResult", "FileEntry", "FileEvent", "FileInfo", "Limits", "OutputEvent",
         "ProcessInfo", "SandboxSpec", "TimingBreakdown"),
        "corral.models",
    ),
    **dict.fromkeys(("EgressDecision", "ExposedPort", "Network", "PortMapping"), "corral.network"),
    "arun": "corral.oneshot",
    "AsyncPool": "corral.pool",
    "AsyncCommandHandle": "corral.commands",
    "CommandHandle": "corral.sync_commands",
    **dict.fromkeys(("AsyncSandbox", "Sandbox"), "corral.public"),
    **dict.fromkeys(("Pool", "run", "run_many"), "corral.sync"),
    **dict.fromkeys(("BatchItem", "TestCase"), "corral.batch.items"),
    "arun_many": "corral.batch.many",
    **dict.fromkeys(("BatchResult", "TestResult"), "corral.batch.verdicts"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(module), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AsyncCommandHandle",
    "AsyncPool",
    "AsyncSandbox",
    "BackgroundCommand",
    "BatchItem",
    "BatchResult",
    "CorralError",
    "EgressDecision",
    "ExecutionResult",
    "ExposedPort",
    "CommandHandle",
    "FileEntry",
    "FileEvent",
    "FileInfo",
    "FileOperationError",
    "InvalidInputError",
    "IsolationUnavailableError",
    "Limits",
    "ProcessInfo",
    "Network",
    "OutcomeUnknownError",
    "OutputEvent",
    "PackageInstallError",
    "PermanentError",
    "Pool",
    "PortMapping",
    "Sandbox",
    "SandboxClosedError",
    "SandboxCrashedError",
    "SandboxSpec",
    "SandboxStartError",
    "TestCase",
    "TestResult",
    "TimingBreakdown",
    "TransientError",
    "arun",
    "arun_many",
    "errors",
    "run",
    "run_many",
]
