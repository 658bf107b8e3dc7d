"""corral errors <-> HTTP answers: one table, used by the server and by the remote client.

Every error answer has an :class:`ErrorBody` whose ``type`` names the corral
error class, so the client raises the same exception the local mode would.
"""

from __future__ import annotations

from corral import errors
from corral.errors import CorralError, FileOperationError

#: Most specific class first: the first match gives the HTTP status.
STATUS_BY_ERROR: list[tuple[type[CorralError], int]] = [
    (errors.InvalidInputError, 422),
    (errors.AuthenticationError, 401),
    (errors.NotFoundError, 404),
    (errors.LimitExceededError, 429),
    (errors.SandboxClosedError, 409),
    (errors.PackageInstallError, 422),
    (errors.TransientError, 503),
    (errors.OutcomeUnknownError, 502),
    (errors.ProtocolError, 502),
    (errors.StorageFullError, 507),
    (errors.PermanentError, 503),
]

#: FileOperationError code -> HTTP status.
FILE_STATUS = {"not_found": 404, "exists": 409, "is_directory": 409, "not_directory": 409, "permission": 403,
               "read_only": 403, "no_space": 507, "too_large": 413, "invalid": 422}

#: HTTP status of an error the framework raised -> the corral error class it means.
ERROR_BY_STATUS = {400: "InvalidInputError", 401: "AuthenticationError", 403: "AuthenticationError",
                   404: "NotFoundError", 405: "InvalidInputError", 409: "SandboxClosedError",
                   413: "InvalidInputError", 415: "InvalidInputError", 422: "InvalidInputError",
                   429: "LimitExceededError", 503: "TransientError"}


def status_of(exc: CorralError) -> int:
    """The HTTP status a corral error is answered with."""
    if isinstance(exc, FileOperationError):
        return FILE_STATUS.get(exc.code, 502)
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def rebuild(type_name: str, message: str, code: str | None) -> CorralError:
    """The corral exception an error body describes (its nearest base when it needs more than a message)."""
    if type_name == "FileOperationError":
        return FileOperationError(code or "internal", message)
    kind = getattr(errors, type_name, None)
    if kind is errors.IsolationUnavailableError:
        return errors.PermanentError(message)
    if isinstance(kind, type) and issubclass(kind, CorralError) and kind is not errors.PackageInstallError:
        return kind(message)
    return CorralError(message)
