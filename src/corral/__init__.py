"""corral: run untrusted Python, JavaScript and shell code in sandboxes you host yourself.

Quick start::

    import corral
    corral.run("print(1)").stdout                      # '1\\n'
    with corral.Sandbox() as sb:                       # a session: state is kept
        sb.run("x = 41"); sb.run("print(x + 1)")

``Sandbox``/``Pool``/``run`` are synchronous; ``AsyncSandbox``/``AsyncPool``/``arun``
are the same API for asyncio.
"""

from corral import errors
from corral.batch.items import BatchItem, TestCase
from corral.batch.many import arun_many
from corral.batch.verdicts import BatchResult, TestResult
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
from corral.models import (
    BackgroundCommand,
    ExecutionResult,
    FileEntry,
    Limits,
    OutputEvent,
    SandboxSpec,
    TimingBreakdown,
)
from corral.network import EgressDecision, ExposedPort, Network, PortMapping
from corral.oneshot import arun
from corral.pool import AsyncPool
from corral.sandbox import AsyncSandbox
from corral.sync import Pool, Sandbox, run, run_many

__version__ = "0.1.0"

__all__ = [
    "AsyncPool",
    "AsyncSandbox",
    "BackgroundCommand",
    "BatchItem",
    "BatchResult",
    "CorralError",
    "EgressDecision",
    "ExecutionResult",
    "ExposedPort",
    "FileEntry",
    "FileOperationError",
    "InvalidInputError",
    "IsolationUnavailableError",
    "Limits",
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
