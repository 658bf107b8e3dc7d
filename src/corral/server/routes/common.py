"""What every route module shares: the documented error answers and the service accessors."""

from __future__ import annotations

from fastapi import Request

from corral.contract.schemas import ErrorBody
from corral.errors import InvalidInputError
from corral.hosted.service import SandboxService
from corral.hosted.snapshots import SnapshotService

#: Answers any route with input can give: a body that is not JSON (400), too large (413), invalid (422).
INPUT_ERRORS = (400, 413, 422)


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for error statuses (all share ErrorBody), the input errors included."""
    return {status: {"model": ErrorBody} for status in sorted({*statuses, *INPUT_ERRORS})}


#: Answers any authenticated route can give.
AUTH_ERRORS = (401, 403, 404)


def service(request: Request) -> SandboxService:
    """The app's sandbox service."""
    return request.app.state.service


def snapshots(request: Request) -> SnapshotService:
    """The app's snapshot service."""
    return request.app.state.snapshots


def _declared_query(dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared_query(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters a route does not declare (a typo must not be silently ignored)."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    unknown = set(request.query_params) - _declared_query(route.dependant)
    if unknown:
        shown = ", ".join(repr(name[:64]) for name in sorted(unknown)[:5])
        raise InvalidInputError(f"unknown query parameter(s) {shown}")
