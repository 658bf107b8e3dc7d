"""Which corral sandbox an E2B sandbox id means, and who may use it.

E2B keeps a sandbox's id across pause and connect (resume); corral's resume
starts a new sandbox that continues the snapshot. An E2B id is therefore the
id of the first corral sandbox of such a chain: :func:`current` follows
paused-and-resumed links (snapshot -> the sandbox resumed from it) to the one
that runs now, :func:`root` walks back. Nothing is stored for this: the links
are the records' own ``snapshot_id`` and ``resumed_from``.

Credentials: the control plane takes an API key in ``X-API-KEY``; the data plane
takes ``X-Access-Token``, a sandbox access token (from create or resume) or the
API key itself (what connect hands out for a running sandbox, whose token only
its creator saw), checked by corral's own :func:`corral.server.auth.authorize_sandbox`.
As in E2B, a sandbox's token keeps working after pause and connect: the token of
an earlier sandbox of the chain is accepted for the one it continues into.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from corral.contract.schemas import SandboxInfo
from corral.contract.states import SandboxState
from corral.errors import NotFoundError
from corral.hosted.keys import TOKEN_PREFIX, split
from corral.hosted.service import SandboxService
from corral.server.auth import authorize_sandbox
from corral.server.e2b.errors import E2BError, gone

#: Longest resume chain followed (each pause-and-connect adds one link).
MAX_CHAIN = 1000


def service_of(request: Request) -> SandboxService:
    """The app's sandbox service."""
    return request.app.state.service


def owner_of(request: Request) -> str:
    """The API key's owner id from ``X-API-KEY`` (E2BError 401 if missing, unknown or revoked)."""
    key = request.headers.get("x-api-key")
    if not key:
        raise E2BError(401, "missing API key: set E2B_API_KEY to a corral API key (ck_...)")
    owner = service_of(request).keys.verify(key)
    if owner is None:
        raise E2BError(401, "invalid or revoked API key")
    return owner


def current(service: SandboxService, e2b_id: str, owner: str | None) -> SandboxInfo:
    """The corral sandbox an E2B id means now (NotFoundError if ``owner`` has no such sandbox)."""
    info = service.get(e2b_id, owner)
    for _ in range(MAX_CHAIN):
        if info.state is not SandboxState.STOPPED or info.snapshot_id is None:
            return info
        successor = next((other for other in service.list(owner or _owner(service, info.id))
                          if other.resumed_from == info.snapshot_id), None)
        if successor is None:
            return info
        info = successor
    return info


def root(service: SandboxService, info: SandboxInfo) -> str:
    """The E2B id of a corral sandbox: the first sandbox of its resume chain."""
    sandbox_id, resumed_from = info.id, info.resumed_from
    for _ in range(MAX_CHAIN):
        if resumed_from is None:
            return sandbox_id
        try:
            snapshot = service.records.snapshot_row(resumed_from, None)
        except NotFoundError:  # the snapshot was deleted: the chain starts here
            return sandbox_id
        sandbox_id = snapshot["sandbox_id"]
        resumed_from = service.get(sandbox_id, None).resumed_from
    return sandbox_id


def _owner(service: SandboxService, sandbox_id: str) -> str:
    return service.records.sandbox_row(sandbox_id, None)["owner"]


def data_plane_sandbox(request: Request) -> tuple[str, str | None]:
    """(corral sandbox id, owner or None) a data-plane request addresses, its credential checked.

    The sandbox comes from ``E2b-Sandbox-Id``, else from the access token. A missing or
    wrong credential is a 401, also for a token of another sandbox; a sandbox that is not
    running answers 502 "was not found", as E2B's proxy does.
    """
    service = service_of(request)
    credential = request.headers.get("x-access-token", "")
    e2b_id = request.headers.get("e2b-sandbox-id") or split(credential, TOKEN_PREFIX)[0]
    if not credential:
        raise E2BError(401, "missing X-Access-Token: use the envdAccessToken of the sandbox", "unauthenticated")
    if not e2b_id:
        raise E2BError(400, "no sandbox named: send E2b-Sandbox-Id", "invalid_argument")
    token_sandbox = split(credential, TOKEN_PREFIX)[0]
    try:
        owner = None if token_sandbox is not None else _key_owner(service, credential)
        info = current(service, e2b_id, owner)
        granted = info.id
        if token_sandbox is not None and token_sandbox != info.id and _continues(service, token_sandbox, info):
            granted = token_sandbox  # E2B keeps one token across pause and connect: an earlier link's token
        caller = authorize_sandbox(service, credential, granted)
    except NotFoundError:
        if token_sandbox is not None:  # a token says nothing about other sandboxes
            authorize_sandbox(service, credential, token_sandbox)
            raise E2BError(401, "this access token belongs to another sandbox", "unauthenticated") from None
        raise gone(e2b_id) from None
    except HTTPException as exc:
        raise E2BError(401, "this access token belongs to another sandbox" if exc.status_code == 403
                       else str(exc.detail), "unauthenticated") from None
    if info.state is not SandboxState.RUNNING:
        raise gone(e2b_id)
    return info.id, caller.owner


def _continues(service: SandboxService, earlier_id: str, info: SandboxInfo) -> bool:
    """True when ``info`` is where the resume chain of sandbox ``earlier_id`` leads now."""
    try:
        return current(service, earlier_id, None).id == info.id
    except NotFoundError:
        return False


def _key_owner(service: SandboxService, credential: str) -> str:
    owner = service.keys.verify(credential)
    if owner is None:
        raise E2BError(401, "invalid X-Access-Token", "unauthenticated")
    return owner
