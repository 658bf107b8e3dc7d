"""A hosted sandbox's runs and commands: to their end, or as a stream of output events then the result.

:func:`execute` does what a RunRequest or CommandRequest asks and returns its
result; :func:`stream` yields the output as it comes, then the ExecutionResult,
straight from the sandbox's own streams (``AsyncSandbox.stream``,
``commands.stream``). The request was validated where it entered (the route's
or the client's schema); the sandbox checks its run input once more, at the
call, so bad input is refused before anything runs or streams. Closing a
stream early cancels the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from corral.contract.schemas import CommandRequest, RunRequest
from corral.errors import InvalidInputError
from corral.models import BackgroundCommand, ExecutionResult, OutputEvent
from corral.sandbox import AsyncSandbox


def stream(sandbox: AsyncSandbox, request: RunRequest | CommandRequest) -> AsyncIterator[OutputEvent | ExecutionResult]:
    """Output events of ``request`` as they come, then its result (InvalidInputError here, on bad input)."""
    if isinstance(request, RunRequest):
        return sandbox.stream(request.code, language=request.language, timeout=request.timeout, env=request.env,
                              cwd=request.cwd)
    if request.background:
        raise InvalidInputError("a background command answers at once: it has no stream")
    return sandbox.commands.stream(request.cmd, cwd=request.cwd, env=request.env, stdin=request.stdin,
                                   timeout=request.timeout)


async def execute(sandbox: AsyncSandbox, request: RunRequest | CommandRequest) -> ExecutionResult | BackgroundCommand:
    """Run ``request`` to its end (a background command: start it and answer its pid and log file)."""
    if isinstance(request, RunRequest):
        return await sandbox.run(request.code, language=request.language, timeout=request.timeout, env=request.env,
                                 cwd=request.cwd)
    if request.background:
        handle = await sandbox.commands.start(request.cmd, cwd=request.cwd, env=request.env,
                                              stdin=request.stdin_pipe, timeout=request.timeout)
        await handle.disconnect()  # it runs on by itself; its output goes to its log file
        return handle.info
    return await sandbox.commands.run(request.cmd, cwd=request.cwd, env=request.env, stdin=request.stdin,
                                      timeout=request.timeout)
