"""The agent's error codes -> corral exceptions: the one place the host translates an ``error`` event.

Every code means one class (:data:`MEANING`). Two kinds of request give a code another meaning,
because their answer is about something else (:data:`OVERRIDES`): a file operation's failure is a
:class:`~corral.errors.FileOperationError` that keeps the code (``not_found`` there is a missing
path, ``too_large`` a file over the limit), and ``busy`` for ``egress`` means a program in the
sandbox holds the relay's port. The table is drawn in docs/errors.md; a test checks that every code
the agent sends is here.
"""

from __future__ import annotations

from typing import Literal, get_args

from corral.errors import (
    CorralError,
    FileOperationError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    ProtocolError,
    SandboxClosedError,
    TransientError,
)
from corral.protocol import Error
from corral.protocol.messages import ErrorCode

#: What a refused request was, as docs/protocol.md groups the requests: ``run`` (``exec``),
#: ``process`` (``process_*``), ``file`` (``file_*`` and ``watch_start``), ``terminal`` (``pty_*``),
#: ``network`` (``egress``, ``port_connect``).
Operation = Literal["run", "process", "file", "terminal", "network"]

#: Agent error code -> (exception class, message); ``{message}`` is the agent's, ``{operation}`` and
#: ``{code}`` name what was refused and why.
MEANING: dict[str, tuple[type[CorralError], str]] = {
    "invalid": (InvalidInputError, "{message}"),
    "too_large": (InvalidInputError, "{message}"),
    "not_found": (NotFoundError, "{message}"),
    "busy": (LimitExceededError, "{message}"),
    "unknown_target": (SandboxClosedError, "{message}"),
    "broken": (TransientError, "the sandbox refused the {operation}: {message}"),
    "internal": (ProtocolError, "the agent refused the {operation} ({code}): {message}"),
    "exists": (FileOperationError, "{message}"),
    "is_directory": (FileOperationError, "{message}"),
    "not_directory": (FileOperationError, "{message}"),
    "permission": (FileOperationError, "{message}"),
    "read_only": (FileOperationError, "{message}"),
    "no_space": (FileOperationError, "{message}"),
}

#: (operation, code) -> (exception class, message), where an operation gives a code another meaning.
OVERRIDES: dict[tuple[Operation, str], tuple[type[CorralError], str]] = {
    **{("file", code): (FileOperationError, "{message}") for code in get_args(ErrorCode) if code != "invalid"},
    ("network", "busy"): (InvalidInputError, "the sandbox cannot open its network relay: {message}"),
}


def agent_error(event: Error, operation: Operation) -> CorralError:
    """The corral exception for the agent's ``error`` answer to an ``operation`` (raise it)."""
    kind, wording = OVERRIDES.get((operation, event.code)) or MEANING.get(event.code, MEANING["internal"])
    message = wording.format(message=event.message, operation=operation, code=event.code)
    if kind is FileOperationError:
        return FileOperationError(event.code, message)
    return kind(message)
