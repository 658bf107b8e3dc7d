"""E2B's error bodies, and the route class that gives every E2B route those bodies.

The control plane and the plain-HTTP data plane answer ``{"code": <status>,
"message": ...}``; Connect RPC paths answer ``{"code": "<connect code>",
"message": ...}`` with the HTTP status of that code. Which corral error means
which status comes from corral's one table (:mod:`corral.contract.errors`);
this module only reshapes the body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.contract.errors import status_of
from corral.errors import CorralError

log = logging.getLogger("corral.server.e2b")

#: HTTP status -> Connect error code (the SDK maps the code back to its exception).
CONNECT_CODE = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
                409: "already_exists", 413: "resource_exhausted", 422: "invalid_argument",
                429: "resource_exhausted", 499: "canceled", 501: "unimplemented", 502: "unavailable",
                503: "unavailable", 504: "deadline_exceeded", 507: "resource_exhausted"}
#: Connect error code -> the HTTP status it is answered with.
CONNECT_STATUS = {"invalid_argument": 400, "failed_precondition": 400, "out_of_range": 400, "unauthenticated": 401,
                  "permission_denied": 403, "not_found": 404, "already_exists": 409, "aborted": 409,
                  "resource_exhausted": 429, "canceled": 499, "unknown": 500, "internal": 500, "data_loss": 500,
                  "unimplemented": 501, "unavailable": 503, "deadline_exceeded": 504}


class E2BError(Exception):
    """An answer an E2B route gives on purpose: an HTTP status (and for RPCs a Connect code)."""

    def __init__(self, status: int, message: str, connect_code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.connect_code = connect_code
        #: Extra answer headers (``Should-Retry: false`` where the SDK's retries are futile).
        self.headers = headers or {}


def gone(sandbox_id: str) -> E2BError:
    """The data plane's answer for a sandbox that is not running (the SDK looks for 'was not found')."""
    return E2BError(502, f"The sandbox {sandbox_id} was not found", "unavailable")


def status_and_message(exc: Exception) -> tuple[int, str, str | None]:
    """(HTTP status, message, Connect code if chosen) of an exception raised while answering."""
    if isinstance(exc, E2BError):
        return exc.status, exc.message, exc.connect_code
    if isinstance(exc, CorralError):
        return status_of(exc), str(exc), None
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return 400, problems or "invalid request", None
    if isinstance(exc, (HTTPException, StarletteHTTPException)):
        return exc.status_code, str(exc.detail), None
    log.exception("unexpected error on an E2B route")
    return 500, f"internal error ({type(exc).__name__}); the server log has details", None


def plain_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The control plane's and plain data plane's error body."""
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


def connect_error(code: str, message: str) -> JSONResponse:
    """A unary Connect RPC's error answer."""
    return JSONResponse({"code": code, "message": message}, status_code=CONNECT_STATUS.get(code, 500))


def connect_code(status: int, chosen: str | None = None) -> str:
    """The Connect code of an HTTP status (``chosen`` wins)."""
    return chosen or CONNECT_CODE.get(status, "internal" if status >= 500 else "invalid_argument")


class PlainErrorRoute(APIRoute):
    """A route whose failures answer ``{"code": status, "message"}`` (control plane, /files, /execute)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every failure becomes E2B's body, never a framework default
                status, message, _ = status_and_message(exc)
                return plain_error(status, message, exc.headers if isinstance(exc, E2BError) else None)

        return answer


class ConnectErrorRoute(APIRoute):
    """A Connect RPC route whose failures answer ``{"code": "<connect code>", "message"}``."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                status, message, code = status_and_message(exc)
                return connect_error(connect_code(status, code), message)

        return answer
