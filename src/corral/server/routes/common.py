"""What every route module shares: the documented error answers and the service accessors."""

from __future__ import annotations

from fastapi import Request

from corral.server.schemas import ErrorBody
from corral.server.service import SandboxService
from corral.server.snapshots import SnapshotService


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for error statuses (all share ErrorBody)."""
    return {status: {"model": ErrorBody} for status in (*statuses, 422)}


#: Answers any authenticated route can give.
AUTH_ERRORS = (401, 403, 404)


def service(request: Request) -> SandboxService:
    """The app's sandbox service."""
    return request.app.state.service


def snapshots(request: Request) -> SnapshotService:
    """The app's snapshot service."""
    return request.app.state.snapshots
