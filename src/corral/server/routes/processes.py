"""Data plane: the processes a sandbox's background commands run (list, signal, stdin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response

from corral.contract.schemas import SignalAnswer, SignalRequest
from corral.models import ProcessInfo
from corral.protocol import wire
from corral.server.auth import Caller, sandbox_access
from corral.server.routes.common import AUTH_ERRORS, errors, service

router = APIRouter(tags=["processes"])

Pid = Annotated[int, Path(ge=1, le=2**31 - 1)]
_STDIN = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/sandboxes/{sandbox_id}/processes", response_model=list[ProcessInfo],
            responses=errors(*AUTH_ERRORS, 409))
async def list_processes(sandbox_id: str, request: Request,
                         caller: Caller = Depends(sandbox_access)) -> list[ProcessInfo]:
    """The background commands still running (pid, cmd, cwd, env, tag, whether stdin is open)."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return await sandbox.commands.list()


@router.post("/sandboxes/{sandbox_id}/processes/{pid}/signal", response_model=SignalAnswer,
             responses=errors(*AUTH_ERRORS, 409))
async def signal_process(sandbox_id: str, pid: Pid, body: SignalRequest, request: Request,
                         caller: Caller = Depends(sandbox_access)) -> SignalAnswer:
    """Signal a background command (SIGKILL: with its descendants); ``signalled`` false if it had ended."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return SignalAnswer(signalled=await sandbox.commands.kill(pid, body.signal))


@router.post("/sandboxes/{sandbox_id}/processes/{pid}/stdin", status_code=204, response_class=Response,
             openapi_extra=_STDIN, responses=errors(*AUTH_ERRORS, 409, 429))
async def send_stdin(sandbox_id: str, pid: Pid, request: Request, caller: Caller = Depends(sandbox_access)) -> Response:
    """Write the request body to the stdin of a command started with ``stdin``."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > wire.MAX_STDIN_BYTES:
            raise HTTPException(413, f"stdin data is larger than {wire.MAX_STDIN_BYTES} bytes")
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        await sandbox.commands.send_stdin(pid, bytes(data))
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/processes/{pid}/stdin/close", status_code=204, response_class=Response,
             responses=errors(*AUTH_ERRORS, 409))
async def close_stdin(sandbox_id: str, pid: Pid, request: Request,
                      caller: Caller = Depends(sandbox_access)) -> Response:
    """Close a command's stdin (it reads EOF after what was sent)."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        await sandbox.commands.close_stdin(pid)
    return Response(status_code=204)
