"""envd's ``process.Process`` Connect service over corral's sandboxes (see :mod:`.processes`)."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from corral.errors import LimitExceededError
from corral.server.e2b import rpc
from corral.server.e2b.errors import ConnectErrorRoute, E2BError
from corral.server.e2b.identity import data_plane_sandbox, service_of
from corral.server.e2b.processes import Process, ProcessTable, events

router = APIRouter(prefix="/process.Process", route_class=ConnectErrorRoute, include_in_schema=False)

#: Seconds of silence before a keepalive event, unless the client asks for another interval.
DEFAULT_KEEPALIVE_S = 50.0
#: Deadline of a process started without ``connect-timeout-ms`` (E2B's ``timeout=0``: no limit).
UNBOUNDED_S = 24 * 3600.0
_TERMINAL_SHELL = [("-i", "-l"), ("-l", "-i"), ("-i",)]


def table(request: Request) -> ProcessTable:
    """The app's E2B process table."""
    return request.app.state.e2b_processes


def _keepalive(request: Request) -> float:
    raw = request.headers.get("keepalive-ping-interval", "")
    return min(max(float(raw), 1.0), 3600.0) if raw.isdigit() else DEFAULT_KEEPALIVE_S


def _script(cmd: str, args: list[str]) -> str:
    """The shell script for ``cmd args``: bash's own ``-c`` script when the SDK wrapped it that way."""
    if cmd.rsplit("/", 1)[-1] == "bash" and "-c" in args and args.index("-c") + 1 < len(args):
        return args[args.index("-c") + 1]
    return shlex.join([cmd, *args])


def _config(message: dict) -> tuple[str, list[str], dict[str, str], str | None]:
    config = rpc.need(rpc.field(message, "process", {}), dict, "process")
    cmd = rpc.need(config.get("cmd"), str, "process.cmd")
    args = rpc.need(config.get("args", []), list, "process.args")
    envs = rpc.need(config.get("envs", {}), dict, "process.envs")
    cwd = config.get("cwd")
    if not cmd or not all(isinstance(arg, str) for arg in args):
        raise E2BError(400, "process.cmd must be a non-empty string and args strings", "invalid_argument")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
        raise E2BError(400, "process.envs must map strings to strings", "invalid_argument")
    if cwd is not None:
        rpc.need(cwd, str, "process.cwd")
    return cmd, args, envs, cwd or None


def _pid(message: dict) -> int:
    selector = rpc.need(rpc.field(message, "process", {}), dict, "process")
    pid = selector.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
        raise E2BError(400, "process.pid: expected a number (tags are not supported)", "invalid_argument")
    return pid


def _find(request: Request, sandbox_id: str, message: dict) -> Process:
    pid = _pid(message)
    process = table(request).get(sandbox_id, pid)
    if process is None:
        raise E2BError(404, f"process with pid {pid} not found", "not_found")
    return process


def _follow(request: Request, process: Process) -> Response:
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly")
    queue = process.follow()

    async def messages() -> AsyncIterator[dict]:
        try:
            async for message in events(process, queue, _keepalive(request)):
                yield message
        finally:
            slots.release()

    return rpc.stream(messages())


@router.post("/Start")
async def start(request: Request) -> Response:
    """Start a command (or a PTY) and stream its events; the process outlives the stream."""
    sandbox_id, owner = data_plane_sandbox(request)
    rpc.user_of(request)
    message = await rpc.read_message(request)
    cmd, args, envs, cwd = _config(message)
    pty = rpc.field(message, "pty")
    tag = rpc.field(message, "tag")
    if rpc.field(message, "stdin", False) is True and pty is None:
        raise E2BError(501, "stdin=True (send_stdin) is not supported by corral's E2B layer yet", "unimplemented")
    timeout = rpc.timeout_s(request) or UNBOUNDED_S
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        config = {"cmd": cmd, "args": args, "envs": envs, **({"cwd": cwd} if cwd else {})}
        if pty is not None:
            size = rpc.need(rpc.need(pty, dict, "pty").get("size", {}), dict, "pty.size")
            cols, rows = size.get("cols", 80), size.get("rows", 24)
            if not all(isinstance(n, int) and 1 <= n <= 1000 for n in (cols, rows)):
                raise E2BError(400, "pty.size: cols and rows must be 1 to 1000", "invalid_argument")
            interactive = cmd.rsplit("/", 1)[-1] == "bash" and tuple(args) in _TERMINAL_SHELL
            process = table(request).start_terminal(
                sandbox_id, sandbox, config, tag, cols=cols, rows=rows,
                command=None if interactive else _script(cmd, args), cwd=cwd, env=envs, timeout=timeout)
        else:
            sandbox._options(_script(cmd, args), "shell", False, timeout, envs, cwd, None)  # bad input: 400 now
            process = table(request).start_command(sandbox_id, sandbox, config, tag, script=_script(cmd, args),
                                                   cwd=cwd, env=envs, timeout=timeout)
    return _follow(request, process)


@router.post("/Connect")
async def connect(request: Request) -> Response:
    """Follow a running process again: ``start`` with its pid, then its new output and its end."""
    sandbox_id, _ = data_plane_sandbox(request)
    return _follow(request, _find(request, sandbox_id, await rpc.read_message(request)))


@router.post("/List")
async def list_processes(request: Request) -> JSONResponse:
    """The sandbox's running processes."""
    sandbox_id, _ = data_plane_sandbox(request)
    await rpc.read_message(request)
    return JSONResponse({"processes": [
        {"pid": process.pid, "config": process.config, **({"tag": process.tag} if process.tag else {})}
        for process in table(request).running(sandbox_id)]})


@router.post("/SendSignal")
async def send_signal(request: Request) -> JSONResponse:
    """SIGKILL or SIGTERM: the process is killed."""
    sandbox_id, _ = data_plane_sandbox(request)
    message = await rpc.read_message(request)
    signal = rpc.field(message, "signal")
    if signal not in ("SIGNAL_SIGKILL", "SIGNAL_SIGTERM", 9, 15):
        raise E2BError(400, f"signal {signal!r}: SIGNAL_SIGKILL or SIGNAL_SIGTERM", "invalid_argument")
    table(request).kill(_find(request, sandbox_id, message))
    return JSONResponse({})


@router.post("/SendInput")
async def send_input(request: Request) -> JSONResponse:
    """Keystrokes to a PTY (stdin of a plain command is not supported yet)."""
    sandbox_id, _ = data_plane_sandbox(request)
    message = await rpc.read_message(request)
    process = _find(request, sandbox_id, message)
    given = rpc.need(rpc.field(message, "input", {}), dict, "input")
    if "pty" in given and process.terminal is not None:
        await process.terminal.wait_open()
        await process.terminal.write(rpc.unbase64(given["pty"], "input.pty"))
        return JSONResponse({})
    if "stdin" in given:
        raise E2BError(501, "stdin of a command is not supported by corral's E2B layer yet", "unimplemented")
    raise E2BError(400, "input: give pty data for a PTY", "invalid_argument")


@router.post("/Update")
async def update(request: Request) -> JSONResponse:
    """Resize a PTY."""
    sandbox_id, _ = data_plane_sandbox(request)
    message = await rpc.read_message(request)
    process = _find(request, sandbox_id, message)
    size = rpc.need(rpc.need(rpc.field(message, "pty", {}), dict, "pty").get("size"), dict, "pty.size")
    cols, rows = size.get("cols"), size.get("rows")
    if process.terminal is None or not all(isinstance(n, int) and 1 <= n <= 1000 for n in (cols, rows)):
        raise E2BError(400, "Update resizes a PTY: pty.size cols and rows 1 to 1000", "invalid_argument")
    await process.terminal.wait_open()
    await process.terminal.resize(cols, rows)
    return JSONResponse({})


@router.post("/StreamInput")
@router.post("/CloseStdin")
async def stdin_unsupported(request: Request) -> JSONResponse:
    """Stdin of a command: not supported yet (corral's commands take their stdin whole)."""
    data_plane_sandbox(request)
    with contextlib.suppress(E2BError):
        await rpc.read_message(request)
    raise E2BError(501, "stdin of a command is not supported by corral's E2B layer yet", "unimplemented")
