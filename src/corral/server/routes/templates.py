"""Templates: build (with NDJSON progress on request), list, get, delete."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from corral.contract.schemas import TemplateDefinition, TemplateInfo
from corral.errors import CorralError, LimitExceededError
from corral.hosted.template_build import build_template
from corral.server.auth import Caller, api_key
from corral.server.limits import ndjson
from corral.server.routes.common import AUTH_ERRORS, errors, service

router = APIRouter(tags=["templates"])

_PROGRESS = {200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                   "description": "the template, or NDJSON progress events when progress is true"}}


@router.post("/templates", response_model=TemplateInfo, responses={**_PROGRESS, **errors(*AUTH_ERRORS, 429, 503)})
async def build(body: TemplateDefinition, request: Request, caller: Caller = Depends(api_key),
                progress: bool = False):
    """Build a template (an identical definition is not built again).

    With ``progress``: NDJSON lines ``{"type": "progress", "step", "total", "message"}``, then
    ``{"type": "template", "template": {...}}`` or ``{"type": "error", "error": {...}}``.
    """
    sandboxes = service(request)
    if not progress:
        release = sandboxes.reserve(caller.owner)
        try:
            return await build_template(sandboxes.templates, sandboxes.blobs, caller.owner, body, lambda *_: None,
                                        isolation=sandboxes.config.isolation)
        finally:
            release()
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly")
    try:
        release = sandboxes.reserve(caller.owner)  # a 429 before the stream starts; released when it ends
    except BaseException:
        slots.release()
        raise
    return StreamingResponse(_progress(request, caller.owner, body, release), media_type="application/x-ndjson")


async def _progress(request: Request, owner: str, body: TemplateDefinition,
                    release: Callable[[], None]) -> AsyncIterator[bytes]:
    sandboxes = service(request)
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(build_template(
        sandboxes.templates, sandboxes.blobs, owner, body,
        lambda step, total, message: queue.put_nowait({"type": "progress", "step": step, "total": total,
                                                       "message": message}),
        isolation=sandboxes.config.isolation,
    ))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            yield ndjson(item)
        try:
            yield ndjson({"type": "template", "template": task.result().model_dump(mode="json")})
        except CorralError as exc:
            yield ndjson({"type": "error", "error": {"type": type(exc).__name__, "message": str(exc)}})
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        release()
        request.app.state.streams.release()


@router.get("/templates", response_model=list[TemplateInfo], responses=errors(*AUTH_ERRORS))
async def list_templates(request: Request, caller: Caller = Depends(api_key)) -> list[TemplateInfo]:
    """The key's built templates (the built-in python, javascript and shell are always there)."""
    return service(request).templates.list(caller.owner)


@router.get("/templates/{name}", response_model=TemplateInfo, responses=errors(*AUTH_ERRORS))
async def get_template(name: str, request: Request, caller: Caller = Depends(api_key)) -> TemplateInfo:
    """A built template by name or id."""
    return service(request).templates.get(caller.owner, name)


@router.delete("/templates/{name}", status_code=204, response_class=Response, responses=errors(*AUTH_ERRORS))
async def delete_template(name: str, request: Request, caller: Caller = Depends(api_key)) -> Response:
    """Forget a template name; sandboxes made from it are unaffected."""
    service(request).templates.delete(caller.owner, name)
    await service(request).collect_blobs()
    return Response(status_code=204)
