"""PTY over WebSocket: ``/v1/sandboxes/{id}/pty?cols=80&rows=24[&command=...]``.

Authenticate with ``Authorization: Bearer <key or sandbox token>`` on the
upgrade request. Messages are JSON text frames. From the client:
``{"type": "input", "data": "ls\\n"}``, ``{"type": "resize", "cols": 120, "rows": 40}``,
``{"type": "kill"}``. From the server: ``{"type": "output", "data": ...}``,
then ``{"type": "exit", "exit_code": 0, "signal": null}`` and a normal close;
``{"type": "error", "error": {"type", "message"}}`` for a refused message.
Refusals before the terminal opens close the socket with code 4000 + the HTTP
status (4401, 4403, 4404, 4409, 4422, 4429). Disconnecting kills the program.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect

from corral.contract.errors import error_for_status, status_of, type_name_of
from corral.contract.schemas import unicode_problem
from corral.errors import CorralError
from corral.hosted.terminal import Terminal, TerminalExit, open_terminal
from corral.server.auth import authorize_sandbox

router = APIRouter(tags=["terminal"])

#: Largest client message (keystrokes or a paste).
MAX_MESSAGE_CHARS = 64 * 1024


@router.websocket("/sandboxes/{sandbox_id}/pty")
async def terminal(websocket: WebSocket, sandbox_id: str, cols: int = 80, rows: int = 24,
                   command: str | None = None) -> None:
    """An interactive terminal in the sandbox."""
    await websocket.accept()
    service = websocket.app.state.service
    slots = websocket.app.state.streams
    acquired = False
    try:
        header = websocket.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise HTTPException(401, "missing credentials: send 'Authorization: Bearer <API key or sandbox token>'")
        caller = authorize_sandbox(service, credential.strip(), sandbox_id)
        if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
            raise HTTPException(422, "cols and rows must be from 1 to 1000")
        if not slots.try_acquire():
            raise HTTPException(429, f"{slots.limit} streams are open on this server (the limit)")
        acquired = True
        async with service.use(sandbox_id, caller.owner) as sandbox:
            console = open_terminal(sandbox)
        await _serve(websocket, console, cols, rows, command)
    except HTTPException as exc:
        await _refuse(websocket, exc.status_code, error_for_status(exc.status_code).__name__, str(exc.detail))
    except CorralError as exc:
        await _refuse(websocket, status_of(exc), type_name_of(exc), str(exc))
    except WebSocketDisconnect:
        pass
    finally:
        if acquired:
            slots.release()


async def _serve(websocket: WebSocket, console: Terminal, cols: int, rows: int, command: str | None) -> None:
    output = console.output(cols, rows, command)
    pump = asyncio.ensure_future(_pump(websocket, output))
    opened = asyncio.ensure_future(console.wait_open())
    await asyncio.wait({opened, pump}, return_when=asyncio.FIRST_COMPLETED)
    opened.cancel()
    try:
        while not pump.done():
            receive = asyncio.ensure_future(websocket.receive_text())
            await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                with contextlib.suppress(BaseException):
                    await receive
                break
            if not await _handle(websocket, console, receive.result()):
                break
    finally:
        if not pump.done():
            pump.cancel()
        with contextlib.suppress(BaseException):
            await pump
        await output.aclose()  # kills the program if it still runs
    if pump.cancelled():
        await websocket.close()
    else:
        pump.result()


async def _pump(websocket: WebSocket, output) -> None:
    async for item in output:
        if isinstance(item, TerminalExit):
            await websocket.send_json({"type": "exit", "exit_code": item.exit_code, "signal": item.signal})
            await websocket.close()
            return
        await websocket.send_json({"type": "output", "data": item})


async def _handle(websocket: WebSocket, console: Terminal, text: str) -> bool:
    """Act on one client message; False when the client asked to kill the program."""
    try:
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message over {MAX_MESSAGE_CHARS} characters")
        message = json.loads(text)
        problem = unicode_problem(message)
        if problem:
            raise ValueError(problem)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "input" and isinstance(message.get("data"), str):
            await console.write(message["data"].encode("utf-8", "surrogatepass"))
        elif kind == "resize" and all(type(message.get(key)) is int and 1 <= message[key] <= 1000
                                      for key in ("cols", "rows")):
            await console.resize(message["cols"], message["rows"])
        elif kind == "kill":
            return False
        else:
            raise ValueError('send {"type": "input", "data": str}, {"type": "resize", "cols": int, "rows": int} '
                             'or {"type": "kill"}')
    except (ValueError, CorralError) as exc:
        await websocket.send_json({"type": "error", "error": {"type": type(exc).__name__, "message": str(exc)}})
    return True


async def _refuse(websocket: WebSocket, status: int, type_name: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_json({"type": "error", "error": {"type": type_name, "message": message}})
        await websocket.close(code=4000 + status, reason=message[:120])
