"""Control plane: create, list, get, kill sandboxes, set their time to live, read their events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from corral.contract.schemas import (
    CreatedSandbox,
    CreateSandbox,
    LogEvent,
    SandboxInfo,
    SetTimeout,
)
from corral.contract.states import SandboxState
from corral.errors import InvalidInputError
from corral.server.auth import Caller, api_key, sandbox_access
from corral.server.routes.common import AUTH_ERRORS, errors, service

router = APIRouter(tags=["sandboxes"])


@router.post("/sandboxes", status_code=201, response_model=CreatedSandbox, responses=errors(*AUTH_ERRORS, 429, 503))
async def create_sandbox(body: CreateSandbox, request: Request, caller: Caller = Depends(api_key)) -> CreatedSandbox:
    """Start a sandbox from a template; the answer holds its access token (shown only once)."""
    created, _ = await service(request).create(caller.owner, body)
    return created


@router.get("/sandboxes", response_model=list[SandboxInfo], responses=errors(*AUTH_ERRORS))
async def list_sandboxes(
    request: Request,
    caller: Caller = Depends(api_key),
    state: SandboxState | None = None,
    metadata: Annotated[list[str], Query(description="KEY=VALUE that must match; repeatable")] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=10000, description="at most this many, newest first")] = 1000,
) -> list[SandboxInfo]:
    """The key's sandboxes, newest first, filtered by state and metadata."""
    wanted = {}
    for item in metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"metadata filter {item!r}: use KEY=VALUE")
        wanted[key] = value
    return service(request).list(caller.owner, metadata=wanted, state=state)[:limit]


@router.get("/sandboxes/{sandbox_id}", response_model=SandboxInfo, responses=errors(*AUTH_ERRORS))
async def get_sandbox(sandbox_id: str, request: Request, caller: Caller = Depends(sandbox_access)) -> SandboxInfo:
    """A sandbox's state, time to live and metadata."""
    return service(request).get(sandbox_id, caller.owner)


@router.delete("/sandboxes/{sandbox_id}", response_model=SandboxInfo, responses=errors(*AUTH_ERRORS))
async def kill_sandbox(sandbox_id: str, request: Request, caller: Caller = Depends(api_key)) -> SandboxInfo:
    """Kill a sandbox (idempotent); a paused one's snapshot stays resumable."""
    return await service(request).kill(sandbox_id, caller.owner)


@router.post("/sandboxes/{sandbox_id}/timeout", response_model=SandboxInfo, responses=errors(*AUTH_ERRORS, 409))
async def set_timeout(sandbox_id: str, body: SetTimeout, request: Request,
                      caller: Caller = Depends(api_key)) -> SandboxInfo:
    """Keep a running sandbox alive ``timeout`` more seconds, counted from now."""
    return service(request).set_timeout(sandbox_id, caller.owner, body.timeout)


@router.get("/sandboxes/{sandbox_id}/events", response_model=list[LogEvent], responses=errors(*AUTH_ERRORS))
async def sandbox_events(sandbox_id: str, request: Request, caller: Caller = Depends(sandbox_access),
                         after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[LogEvent]:
    """The sandbox's recorded lifecycle events after sequence number ``after``, oldest first."""
    service(request).get(sandbox_id, caller.owner)
    return service(request).records.events(sandbox_id, after, limit)
