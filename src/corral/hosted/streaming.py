"""Runs and commands as one async stream of output events followed by the result.

:func:`execution_stream` turns a run that reports output through callbacks
into an async iterator; closing the iterator early cancels the run.
:func:`start_execution` starts what a RunRequest or CommandRequest asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from corral.models import BackgroundCommand, ExecutionResult, OutputEvent
from corral.sandbox import AsyncSandbox
from corral.contract.schemas import CommandRequest, RunRequest

Start = Callable[[Callable | None, Callable | None], Awaitable[ExecutionResult | BackgroundCommand]]


def check_execution(sandbox: AsyncSandbox, request: RunRequest | CommandRequest) -> None:
    """Refuse bad input (InvalidInputError) before anything runs."""
    if isinstance(request, RunRequest):
        sandbox._options(request.code, request.language, True, request.timeout, request.env, request.cwd, None)
    elif not request.background:
        sandbox._options(request.cmd, "shell", False, request.timeout, request.env, request.cwd, request.stdin)


def start_execution(sandbox: AsyncSandbox, request: RunRequest | CommandRequest) -> Start:
    """A function that runs ``request`` in ``sandbox`` with the given output callbacks."""
    if isinstance(request, RunRequest):
        return lambda on_stdout, on_stderr: sandbox.run(
            request.code, language=request.language, timeout=request.timeout, env=request.env, cwd=request.cwd,
            on_stdout=on_stdout, on_stderr=on_stderr,
        )
    if request.background:
        return lambda on_stdout, on_stderr: _start_background(sandbox, request)
    return lambda on_stdout, on_stderr: sandbox.commands.run(
        request.cmd, cwd=request.cwd, env=request.env, stdin=request.stdin, timeout=request.timeout,
        on_stdout=on_stdout, on_stderr=on_stderr,
    )


async def _start_background(sandbox: AsyncSandbox, request: CommandRequest) -> BackgroundCommand:
    """Start a background command and let it run on its own (its output goes to its log file)."""
    handle = await sandbox.commands.start(request.cmd, cwd=request.cwd, env=request.env, stdin=request.stdin_pipe,
                                          timeout=request.timeout)
    await handle.disconnect()
    return handle.info


async def execution_stream(start: Start) -> AsyncIterator[OutputEvent | ExecutionResult]:
    """Yield OutputEvents as the run reports them, then its ExecutionResult (or raise its error)."""
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(start(
        lambda data: queue.put_nowait(OutputEvent(stream="stdout", data=data)),
        lambda data: queue.put_nowait(OutputEvent(stream="stderr", data=data)),
    ))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            yield item
        yield task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
