"""Pause a sandbox into a snapshot; list, get, delete and resume snapshots."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from corral.contract.schemas import CreatedSandbox, ResumeSnapshot, SnapshotInfo
from corral.server.auth import Caller, api_key
from corral.server.routes.common import AUTH_ERRORS, errors, snapshots

router = APIRouter(tags=["snapshots"])


@router.post("/sandboxes/{sandbox_id}/pause", status_code=201, response_model=SnapshotInfo,
             responses=errors(*AUTH_ERRORS, 409))
async def pause_sandbox(sandbox_id: str, request: Request, caller: Caller = Depends(api_key)) -> SnapshotInfo:
    """Capture the sandbox into a durable snapshot, then stop it (state Paused)."""
    return await snapshots(request).pause(sandbox_id, caller.owner)


@router.get("/snapshots", response_model=list[SnapshotInfo], responses=errors(*AUTH_ERRORS))
async def list_snapshots(request: Request, caller: Caller = Depends(api_key)) -> list[SnapshotInfo]:
    """The key's snapshots, newest first."""
    return snapshots(request).list(caller.owner)


@router.get("/snapshots/{snapshot_id}", response_model=SnapshotInfo, responses=errors(*AUTH_ERRORS))
async def get_snapshot(snapshot_id: str, request: Request, caller: Caller = Depends(api_key)) -> SnapshotInfo:
    """One snapshot."""
    return snapshots(request).get(snapshot_id, caller.owner)


@router.delete("/snapshots/{snapshot_id}", status_code=204, response_class=Response, responses=errors(*AUTH_ERRORS))
async def delete_snapshot(snapshot_id: str, request: Request, caller: Caller = Depends(api_key)) -> Response:
    """Forget a snapshot: it cannot be resumed any more."""
    await snapshots(request).delete(snapshot_id, caller.owner)
    return Response(status_code=204)


@router.post("/snapshots/{snapshot_id}/resume", status_code=201, response_model=CreatedSandbox,
             responses=errors(*AUTH_ERRORS, 429, 503))
async def resume_snapshot(snapshot_id: str, request: Request, body: ResumeSnapshot | None = None,
                          caller: Caller = Depends(api_key)) -> CreatedSandbox:
    """A new running sandbox continuing the snapshot (its files are back)."""
    return await snapshots(request).resume(snapshot_id, caller.owner, body or ResumeSnapshot())
