"""Data plane: runs (session code) and shell commands, as one JSON result or streamed NDJSON.

A streamed answer is ``application/x-ndjson``, one object per line:
``{"type": "output", "stream": "stdout", "data": ...}`` as output arrives, then
``{"type": "result", "result": {ExecutionResult}}``, or
``{"type": "error", "error": {ErrorDetail}}`` if the run broke after the
answer began. Bad input is refused with a 4xx before the stream starts; a
client that disconnects cancels the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from corral.errors import CorralError, LimitExceededError
from corral.models import BackgroundCommand, ExecutionResult
from corral.sandbox import AsyncSandbox
from corral.server.auth import Caller, sandbox_access
from corral.server.limits import ndjson
from corral.server.routes.common import AUTH_ERRORS, errors, service
from corral.server.schemas import CommandRequest, RunRequest

router = APIRouter(tags=["execution"])

_STREAM = {200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                 "description": "the result, or NDJSON events when stream is true"}}
Start = Callable[[AsyncSandbox, Callable, Callable], Awaitable[ExecutionResult]]


@router.post("/sandboxes/{sandbox_id}/runs", response_model=ExecutionResult,
             responses={**_STREAM, **errors(*AUTH_ERRORS, 409, 429, 502)})
async def run_code(sandbox_id: str, body: RunRequest, request: Request, caller: Caller = Depends(sandbox_access)):
    """Run code in the sandbox's session interpreter (state is kept between runs)."""
    def check(sandbox: AsyncSandbox) -> None:
        sandbox._options(body.code, body.language, True, body.timeout, body.env, body.cwd, None)

    def start(sandbox: AsyncSandbox, on_stdout, on_stderr):
        return sandbox.run(body.code, language=body.language, timeout=body.timeout, env=body.env, cwd=body.cwd,
                           on_stdout=on_stdout, on_stderr=on_stderr)

    return await _execute(request, sandbox_id, caller, body.stream, check, start)


@router.post("/sandboxes/{sandbox_id}/commands", response_model=ExecutionResult | BackgroundCommand,
             responses={**_STREAM, **errors(*AUTH_ERRORS, 409, 429, 502)})
async def run_command(sandbox_id: str, body: CommandRequest, request: Request,
                      caller: Caller = Depends(sandbox_access)):
    """Run a shell command in a fresh process (``background``: start it and answer at once)."""
    if body.background:
        async with service(request).use(sandbox_id, caller.owner) as sandbox:
            return await sandbox.commands.run(body.cmd, cwd=body.cwd, env=body.env, background=True,
                                              **({"stdin": body.stdin} if body.stdin is not None else {}),
                                              **({"timeout": body.timeout} if body.timeout is not None else {}))

    def check(sandbox: AsyncSandbox) -> None:
        sandbox._options(body.cmd, "shell", False, body.timeout, body.env, body.cwd, body.stdin)

    def start(sandbox: AsyncSandbox, on_stdout, on_stderr):
        return sandbox.commands.run(body.cmd, cwd=body.cwd, env=body.env, stdin=body.stdin, timeout=body.timeout,
                                    on_stdout=on_stdout, on_stderr=on_stderr)

    return await _execute(request, sandbox_id, caller, body.stream, check, start)


async def _execute(request: Request, sandbox_id: str, caller: Caller, stream: bool,
                   check: Callable[[AsyncSandbox], None], start: Start):
    if not stream:
        async with service(request).use(sandbox_id, caller.owner) as sandbox:
            return await start(sandbox, None, None)
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly "
                                 "or ask for a plain JSON answer")
    stack = contextlib.AsyncExitStack()
    try:
        stack.callback(slots.release)
        sandbox = await stack.enter_async_context(service(request).use(sandbox_id, caller.owner))
        check(sandbox)  # bad input is a 4xx, before the stream begins
    except BaseException:
        await stack.aclose()
        raise
    return StreamingResponse(_events(stack, sandbox, start), media_type="application/x-ndjson")


async def _events(stack: contextlib.AsyncExitStack, sandbox: AsyncSandbox, start: Start) -> AsyncIterator[bytes]:
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(start(
        sandbox, lambda data: queue.put_nowait(("stdout", data)), lambda data: queue.put_nowait(("stderr", data)),
    ))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            yield ndjson({"type": "output", "stream": item[0], "data": item[1]})
        try:
            result = task.result()
        except CorralError as exc:
            yield ndjson({"type": "error", "error": {"type": type(exc).__name__, "message": str(exc),
                                                     "code": getattr(exc, "code", None)}})
        else:
            yield ndjson({"type": "result", "result": result.model_dump(mode="json")})
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await stack.aclose()
