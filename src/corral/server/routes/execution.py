"""Data plane: runs (session code) and shell commands, as one JSON result or streamed NDJSON.

A streamed answer is ``application/x-ndjson``, one object per line:
``{"type": "output", "stream": "stdout", "data": ...}`` as output arrives, then
``{"type": "result", "result": {ExecutionResult}}``, or
``{"type": "error", "error": {ErrorDetail}}`` if the run broke after the
answer began. Bad input is refused with a 4xx before the stream starts; a
client that disconnects cancels the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from corral.contract.schemas import CommandRequest, RunRequest
from corral.errors import CorralError, LimitExceededError
from corral.hosted import streaming
from corral.models import BackgroundCommand, ExecutionResult, OutputEvent
from corral.server.auth import Caller, sandbox_access
from corral.server.limits import ndjson
from corral.server.routes.common import AUTH_ERRORS, errors, service

router = APIRouter(tags=["execution"])

_STREAM = {200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                 "description": "the result, or NDJSON events when stream is true"}}


@router.post("/sandboxes/{sandbox_id}/runs", response_model=ExecutionResult,
             responses={**_STREAM, **errors(*AUTH_ERRORS, 409, 429, 502)})
async def run_code(sandbox_id: str, body: RunRequest, request: Request, caller: Caller = Depends(sandbox_access)):
    """Run code in the sandbox's session interpreter (state is kept between runs)."""
    return await _execute(request, sandbox_id, caller, body)


@router.post("/sandboxes/{sandbox_id}/commands", response_model=ExecutionResult | BackgroundCommand,
             responses={**_STREAM, **errors(*AUTH_ERRORS, 409, 429, 502)})
async def run_command(sandbox_id: str, body: CommandRequest, request: Request,
                      caller: Caller = Depends(sandbox_access)):
    """Run a shell command in a fresh process (``background``: start it and answer at once)."""
    return await _execute(request, sandbox_id, caller, body)


async def _execute(request: Request, sandbox_id: str, caller: Caller, body: RunRequest | CommandRequest):
    if not body.stream or getattr(body, "background", False):
        async with service(request).use(sandbox_id, caller.owner) as sandbox:
            return await streaming.execute(sandbox, body)
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly "
                                 "or ask for a plain JSON answer")
    stack = contextlib.AsyncExitStack()
    try:
        stack.callback(slots.release)
        sandbox = await stack.enter_async_context(service(request).use(sandbox_id, caller.owner))
        events = streaming.stream(sandbox, body)  # bad input is a 4xx, before the stream begins
    except BaseException:
        await stack.aclose()
        raise
    return StreamingResponse(_lines(stack, events), media_type="application/x-ndjson")


async def _lines(stack: contextlib.AsyncExitStack, events: AsyncIterator) -> AsyncIterator[bytes]:
    try:
        async for item in events:
            if isinstance(item, OutputEvent):
                yield ndjson({"type": "output", "stream": item.stream, "data": item.data})
            else:
                yield ndjson({"type": "result", "result": item.model_dump(mode="json")})
    except CorralError as exc:
        yield ndjson({"type": "error", "error": {"type": type(exc).__name__, "message": str(exc),
                                                 "code": getattr(exc, "code", None)}})
    finally:
        await events.aclose()
        await stack.aclose()
