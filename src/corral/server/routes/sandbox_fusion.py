"""SandboxFusion's ``POST /run_code``, so its clients (and verl's reward code) can use a corral server.

Credentials: ``Authorization: Bearer`` with an API key (unscoped or ``sandbox-fusion``-scoped) on
``/run_code``; or, for clients that send none, a ``sandbox-fusion``-scoped key in the path:
``/sandbox-fusion/<key>/run_code`` (an unscoped key is refused there: a URL ends up in logs).
``corral serve --sandbox-fusion-no-auth`` (loopback binds only) lets ``/run_code`` run without
credentials. Over the key's share of runners: 429 with ``Retry-After``, SandboxFusion's shape.
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from corral.server.batch import Overloaded
from corral.server.routes.common import errors
from corral.server.sandbox_fusion import (
    RunCodeRequest,
    RunCodeResponse,
    sandbox_error,
    to_item,
    to_response,
)

SCOPE = "sandbox-fusion"
#: The owner of runs made without credentials (``--sandbox-fusion-no-auth``).
ANONYMOUS = "sandbox-fusion-anonymous"

router = APIRouter(tags=["sandbox-fusion"])
_KEY_IN_PATH = re.compile(r"/sandbox-fusion/[^/?\s]+")


class RedactKeyInPath(logging.Filter):
    """Hide the key of ``/sandbox-fusion/<key>/...`` in access-log records (uvicorn's ``uvicorn.access``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_KEY_IN_PATH.sub("/sandbox-fusion/<key>", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True
_bearer = HTTPBearer(auto_error=False, description="an API key, unscoped or scoped to sandbox-fusion")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def bearer_owner(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    """The owner of a ``/run_code`` call: its key's id, or the anonymous owner when the server allows it."""
    if credentials is None:
        if request.app.state.sandbox_fusion_open:
            return ANONYMOUS
        raise _unauthorized("missing credentials: send 'Authorization: Bearer <API key>' or use "
                            "/sandbox-fusion/<sandbox-fusion key>/run_code")
    owner = request.app.state.service.keys.verify_scoped(credentials.credentials, SCOPE)
    if owner is None:
        raise _unauthorized("invalid or revoked API key")
    return owner


def path_owner(key: str, request: Request) -> str:
    """The owner of a ``/sandbox-fusion/<key>/run_code`` call: the key must be scoped to sandbox-fusion."""
    keys = request.app.state.service.keys
    owner = keys.verify_scoped(key, SCOPE)
    if owner is None:
        raise _unauthorized("invalid or revoked sandbox-fusion key")
    if keys.verify(key) is not None:
        raise HTTPException(403, "an unscoped API key must not be put in a URL: create one with "
                                 "`corral keys create --scope sandbox-fusion`")
    return owner


_ANSWERS = errors(401, 403, 429)


@router.post("/run_code", response_model=RunCodeResponse, responses=_ANSWERS)
async def run_code(body: RunCodeRequest, request: Request, owner: str = Depends(bearer_owner)):
    """Run code once, SandboxFusion's way (compile first for cpp)."""
    return await _run(request, owner, body)


@router.post("/sandbox-fusion/{key}/run_code", response_model=RunCodeResponse, responses=_ANSWERS)
async def run_code_with_key(body: RunCodeRequest, request: Request, owner: str = Depends(path_owner)):
    """``/run_code`` for clients that send no credentials: the sandbox-fusion key is in the path."""
    return await _run(request, owner, body)


async def _run(request: Request, owner: str, body: RunCodeRequest):
    try:
        item = to_item(body)
    except ValueError as exc:
        return sandbox_error(str(exc))
    try:
        result = await request.app.state.batch.run_one(owner, item)
    except Overloaded as exc:
        return JSONResponse(sandbox_error(str(exc)).model_dump(), status_code=429,
                            headers={"Retry-After": str(exc.retry_after)})
    return to_response(result)
