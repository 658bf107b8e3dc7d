"""corral errors <-> HTTP statuses: the one table, used by the server, the remote client and its terminal.

Every error answer has an :class:`~corral.contract.schemas.ErrorBody` whose ``type`` names the
corral error class (and ``code`` a FileOperationError's code), so the client raises the same
exception the local mode would (:func:`rebuild`). :data:`TABLE` is read both ways, first match
first: an error is answered with the status of the first row it matches (:func:`status_of`); an
answer that names no class (the framework's, a limit's, a proxy's, a WebSocket's close code) means
the class of the first row with its status (:func:`error_for_status`). A class defined outside
:mod:`corral.errors` (a server's own subclass) is named by its nearest base there (:func:`type_name_of`).
"""

from __future__ import annotations

from corral import errors
from corral.errors import CorralError, FileOperationError

#: (error class, FileOperationError code or None for any, HTTP status); most specific first.
TABLE: list[tuple[type[CorralError], str | None, int]] = [
    (errors.InvalidInputError, None, 422),
    (errors.AuthenticationError, None, 401),
    (errors.NotFoundError, None, 404),
    (errors.LimitExceededError, None, 429),
    (errors.SandboxClosedError, None, 409),
    (errors.PackageInstallError, None, 422),
    (errors.TransientError, None, 503),
    (errors.OutcomeUnknownError, None, 502),
    (errors.ProtocolError, None, 502),
    (errors.StorageFullError, None, 507),
    (errors.PermanentError, None, 503),
    # statuses no corral error is answered with, but the framework, a limit or a proxy gives
    (errors.AuthenticationError, None, 403),
    (errors.InvalidInputError, None, 400),
    (errors.InvalidInputError, None, 405),
    (errors.InvalidInputError, None, 413),
    (errors.InvalidInputError, None, 415),
    (errors.OutcomeUnknownError, None, 504),
    # a file operation's failure, by its code
    (FileOperationError, "not_found", 404),
    (FileOperationError, "exists", 409),
    (FileOperationError, "is_directory", 409),
    (FileOperationError, "not_directory", 409),
    (FileOperationError, "permission", 403),
    (FileOperationError, "read_only", 403),
    (FileOperationError, "no_space", 507),
    (FileOperationError, "too_large", 413),
    (FileOperationError, "invalid", 422),
    (FileOperationError, None, 502),
    (CorralError, None, 500),
]

#: Classes an answer cannot rebuild from a message alone -> the nearest base the client raises.
NEAREST_BASE: dict[type[CorralError], type[CorralError]] = {
    errors.IsolationUnavailableError: errors.PermanentError,
    errors.PackageInstallError: CorralError,
}


def status_of(exc: CorralError) -> int:
    """The HTTP status a corral error is answered with (the last row matches every one)."""
    return next(status for kind, code, status in TABLE
                if isinstance(exc, kind) and (code is None or getattr(exc, "code", None) == code))


def type_name_of(exc: CorralError) -> str:
    """The class an error answer names: the error's own, or its nearest base in :mod:`corral.errors`."""
    return next(kind.__name__ for kind in type(exc).__mro__ if getattr(errors, kind.__name__, None) is kind)


def error_for_status(status: int) -> type[CorralError]:
    """The corral error class an answer with ``status`` and no error body means (CorralError if none);
    each such class is built from a message alone."""
    return next((kind for kind, _, answered in TABLE if answered == status), CorralError)


def rebuild(type_name: str, message: str, code: str | None) -> CorralError:
    """The corral exception an error body describes (its nearest base when it needs more than a message)."""
    if type_name == FileOperationError.__name__:
        return FileOperationError(code or "internal", message)
    kind = getattr(errors, type_name, None)
    if not (isinstance(kind, type) and issubclass(kind, CorralError)):
        return CorralError(message)
    return NEAREST_BASE.get(kind, kind)(message)
