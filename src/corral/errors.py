"""Every error corral raises, arranged by what the caller should do about it.

::

    CorralError
    ├── InvalidInputError          fix the input: nothing ran            (also a ValueError)
    ├── TransientError             retry: nothing ran, a retry may succeed
    │   ├── SandboxStartError        the sandbox did not come up
    │   └── LimitExceededError       a limit (sandboxes per key, streams, processes at once) is reached,
    │                                or something in the sandbox is busy (the agent's ``busy``)
    ├── OutcomeUnknownError        do not retry blindly: the operation may have run
    │   └── SandboxCrashedError      the sandbox or its agent died mid-operation
    │       └── NodeLostError            (corral.cluster) the Ray node holding it died
    ├── PermanentError             give up: the same call cannot succeed here
    │   ├── IsolationUnavailableError  the level cannot work on this host (the probe says why)
    │   ├── ProtocolError              the agent broke the protocol: a bug, report it
    │   ├── AuthenticationError        a corral server refused the credentials (or this sandbox to them)
    │   ├── NotFoundError              no such sandbox, snapshot, template (for these credentials) or process
    │   └── StorageFullError           a corral server's data disk is full: nothing was recorded
    ├── PackageInstallError        the package installer failed: its output is in .result
    ├── SandboxClosedError         you closed it (or it was torn down): open a new one
    └── FileOperationError         a file operation failed inside the sandbox (also an OSError)

The user's code failing (an exception, a non-zero exit, a timeout, running out
of memory) is never an exception: it is data in :class:`corral.ExecutionResult`.
"""

from __future__ import annotations


class CorralError(Exception):
    """Root of every corral error."""


class InvalidInputError(CorralError, ValueError):
    """A request was refused before anything ran; the message names the problem."""


class PermanentError(CorralError):
    """Retrying the same call cannot succeed on this host."""


class IsolationUnavailableError(PermanentError):
    """The requested isolation level cannot work on this host; ``reason`` says why."""

    def __init__(self, isolation: str, reason: str):
        super().__init__(f"isolation level {isolation!r} is not available here: {reason}")
        self.isolation = isolation
        self.reason = reason

    def __reduce__(self):  # picklable (errors cross processes, e.g. from a Ray actor)
        return type(self), (self.isolation, self.reason)


class TransientError(CorralError):
    """Nothing ran and a retry may succeed."""


class SandboxStartError(TransientError):
    """The sandbox did not start or its agent did not say hello in time."""


class LimitExceededError(TransientError):
    """A corral server limit (sandboxes per key, concurrent streams) or a sandbox's cap on processes at once is
    reached, or something in the sandbox is busy (unread stdin or terminal input, a running session block);
    retry later."""


class AuthenticationError(PermanentError):
    """A corral server refused the credentials (HTTP 401) or this sandbox to them (403)."""


class NotFoundError(PermanentError):
    """No such sandbox, snapshot or template, as far as these credentials can see; or no such running process."""


class StorageFullError(PermanentError):
    """A corral server's data disk is full (HTTP 507): nothing was recorded and nothing is left half-written."""


class OutcomeUnknownError(CorralError):
    """The operation may or may not have run; retry only if it is idempotent."""


class SandboxCrashedError(OutcomeUnknownError):
    """The sandbox or its agent died while an operation was in flight."""


class NodeLostError(SandboxCrashedError):
    """A Ray node of a cluster pool died (or its sandbox host did) while a call on it was in flight.

    ``node_id`` names the node (None when rebuilt from a server's answer: the message names it); the
    sandboxes there are gone, so whatever ran there has an unknown outcome.
    """

    def __init__(self, message: str, node_id: str | None = None):
        super().__init__(message)
        self.node_id = node_id

    def __reduce__(self):
        return type(self), (str(self), self.node_id)


class SandboxClosedError(CorralError):
    """The sandbox was closed (by you, or by its teardown) before this call."""


class PackageInstallError(CorralError):
    """The package installer failed; ``result`` holds its output and exit code."""

    def __init__(self, packages: list[str], result: object):
        stderr = getattr(result, "stderr", "") or getattr(result, "stdout", "")
        super().__init__(f"installing {', '.join(packages)} failed (exit {getattr(result, 'exit_code', '?')}): "
                         f"{stderr.strip()[-1500:]}")
        self.packages = packages
        self.result = result

    def __reduce__(self):
        return type(self), (self.packages, self.result)


class ProtocolError(PermanentError):
    """The agent sent something the protocol does not allow."""


class FileOperationError(CorralError, OSError):
    """A file operation failed inside the sandbox; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str):
        CorralError.__init__(self, message)
        self.code = code

    def __reduce__(self):
        return type(self), (self.code, str(self))

    def __str__(self) -> str:
        return str(self.args[0])

    @property
    def missing(self) -> bool:
        """True when the error says nothing is at the path (``not_found``, or a file where a directory was named)."""
        return self.code in ("not_found", "not_directory")


__all__ = [
    "AuthenticationError",
    "CorralError",
    "FileOperationError",
    "InvalidInputError",
    "IsolationUnavailableError",
    "LimitExceededError",
    "NodeLostError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PackageInstallError",
    "PermanentError",
    "ProtocolError",
    "SandboxClosedError",
    "SandboxCrashedError",
    "SandboxStartError",
    "StorageFullError",
    "TransientError",
]
