"""Who is calling: an API key (control plane) or a sandbox's access token (its data plane).

Both come as ``Authorization: Bearer <credential>``. No or bad credentials:
401, and so is a token of a sandbox whose owning key was revoked. A valid
token of another sandbox: 403. A key that does not own the sandbox: 404
(another owner's sandboxes are not disclosed). Secrets are compared by hash
in constant time and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from corral.hosted.keys import KEY_PREFIX, TOKEN_PREFIX, matches, split

_bearer = HTTPBearer(auto_error=False, description="an API key (ck_...) or a sandbox access token (st_...)")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the owner (key id) for a key, None for a sandbox token."""

    owner: str | None
    sandbox_id: str | None = None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def _credential(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise _unauthorized("missing credentials: send 'Authorization: Bearer <API key or sandbox token>'")
    return credentials.credentials


def api_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """The caller of a control-plane route: an API key is required."""
    credential = _credential(credentials)
    if credential.startswith(TOKEN_PREFIX):
        raise HTTPException(403, "a sandbox access token grants runs, commands and files of its sandbox only; "
                                 "this call needs an API key")
    owner = request.app.state.service.keys.verify(credential) if credential.startswith(KEY_PREFIX) else None
    if owner is None:
        raise _unauthorized("invalid or revoked API key")
    return Caller(owner)


def sandbox_access(sandbox_id: str, request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """The caller of a data-plane route of ``sandbox_id``: its owner's key or its own access token."""
    return authorize_sandbox(request.app.state.service, _credential(credentials), sandbox_id)


def authorize_sandbox(service, credential: str, sandbox_id: str) -> Caller:
    """Check ``credential`` for the data plane of ``sandbox_id`` (HTTPException 401/403 if refused)."""
    if credential.startswith(KEY_PREFIX):
        owner = service.keys.verify(credential)
        if owner is None:
            raise _unauthorized("invalid or revoked API key")
        return Caller(owner)
    token_sandbox, secret = split(credential, TOKEN_PREFIX)
    record = service.records.token(token_sandbox) if token_sandbox is not None else None
    if record is None or not matches(secret, record[0]):
        raise _unauthorized("invalid sandbox access token")
    if not service.keys.active(record[1]):  # revoking a key revokes the tokens of its sandboxes
        raise _unauthorized("the API key that owns this sandbox was revoked, and its access tokens with it")
    if token_sandbox != sandbox_id:
        raise HTTPException(403, "this access token belongs to another sandbox")
    return Caller(None, sandbox_id)
