"""envd's ``process.Process`` Connect service over corral's process handles and terminals.

A command is ``sandbox.commands.start`` (a real process of the sandbox, with
its pid); its stream follows the handle, and dropping the stream only
disconnects the handle, so the process lives on for ``Connect``, ``List``,
``SendSignal`` and stdin calls. A PTY is a corral terminal (see
:mod:`.terminals`).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from corral.errors import LimitExceededError, NotFoundError
from corral.server.e2b import rpc
from corral.server.e2b.errors import ConnectErrorRoute, E2BError
from corral.server.e2b.identity import data_plane_sandbox, service_of
from corral.server.e2b.terminals import Pty, Terminals, exit_end

router = APIRouter(prefix="/process.Process", route_class=ConnectErrorRoute, include_in_schema=False)

#: Seconds of silence before a keepalive event, unless the client asks for another interval.
DEFAULT_KEEPALIVE_S = 50.0
#: Output chunks held for a stream whose client reads slowly; more are dropped from the stream
#: (the handle's own capture and the process's log file still have them).
STREAM_QUEUE = 4096
_TERMINAL_SHELL = [("-i", "-l"), ("-l", "-i"), ("-i",)]


def terminals(request: Request) -> Terminals:
    """The app's E2B PTY table."""
    return request.app.state.e2b_terminals


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
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise E2BError(400, "process.pid: expected a positive number (tags are not supported)", "invalid_argument")
    return pid


def _not_found(pid: int) -> E2BError:
    return E2BError(404, f"process with pid {pid} not found", "not_found")


def _stream_slot(request: Request) -> None:
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly")


async def _command_events(request: Request, open_handle) -> Response:
    """Stream a command's events: ``start`` with its pid, output, keepalives, ``end``."""
    _stream_slot(request)
    queue: asyncio.Queue = asyncio.Queue()

    def put(stream: str):
        def deliver(text: str) -> None:
            if queue.qsize() < STREAM_QUEUE:
                queue.put_nowait({"data": {stream: rpc.b64(text.encode("utf-8", "replace"))}})
        return deliver

    try:
        handle = await open_handle(put("stdout"), put("stderr"))
    except BaseException:
        request.app.state.streams.release()
        raise
    waiter = asyncio.ensure_future(handle.wait())
    waiter.add_done_callback(lambda _: queue.put_nowait(None))
    keepalive = _keepalive(request)

    async def messages() -> AsyncIterator[dict]:
        try:
            yield {"event": {"start": {"pid": handle.pid}}}
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield {"event": {"keepalive": {}}}
                    continue
                if item is None:
                    result = waiter.result()
                    yield {"event": {"end": exit_end(result.exit_code, result.signal, result.timed_out)}}
                    return
                yield {"event": item}
        finally:
            request.app.state.streams.release()
            if not waiter.done():  # the client left: the process lives on, the handle lets go
                waiter.cancel()
                await asyncio.shield(handle.disconnect())

    return rpc.stream(messages())


def _pty_events(request: Request, pty: Pty) -> Response:
    _stream_slot(request)
    queue = pty.follow()
    keepalive = _keepalive(request)

    async def messages() -> AsyncIterator[dict]:
        try:
            yield {"event": {"start": {"pid": pty.pid}}}
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield {"event": {"keepalive": {}}}
                    continue
                yield {"event": item}
                if "end" in item:
                    return
        finally:
            pty.unfollow(queue)
            request.app.state.streams.release()

    return rpc.stream(messages())


@router.post("/Start")
async def start(request: Request) -> Response:
    """Start a command (or a PTY) and stream its events; the process outlives the stream."""
    sandbox_id, owner = data_plane_sandbox(request)
    rpc.user_of(request)
    message = await rpc.read_message(request)
    cmd, args, envs, cwd = _config(message)
    pty, tag, stdin = rpc.field(message, "pty"), rpc.field(message, "tag"), rpc.field(message, "stdin", False)
    if not isinstance(stdin, bool) or tag is not None and not isinstance(tag, str):
        raise E2BError(400, "stdin is a boolean and tag a string", "invalid_argument")
    timeout = rpc.timeout_s(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        if pty is None:
            return await _command_events(request, lambda on_stdout, on_stderr: sandbox.commands.start(
                _script(cmd, args), cwd=cwd, env=envs, stdin=stdin, timeout=timeout, tag=tag,
                on_stdout=on_stdout, on_stderr=on_stderr))
        size = rpc.need(rpc.need(pty, dict, "pty").get("size", {}), dict, "pty.size")
        cols, rows = size.get("cols", 80), size.get("rows", 24)
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1000 for n in (cols, rows)):
            raise E2BError(400, "pty.size: cols and rows must be 1 to 1000", "invalid_argument")
        interactive = cmd.rsplit("/", 1)[-1] == "bash" and tuple(args) in _TERMINAL_SHELL
        config = {"cmd": cmd, "args": args, "envs": envs, **({"cwd": cwd} if cwd else {})}
        opened = terminals(request).open(sandbox_id, sandbox, config, tag, cols=cols, rows=rows,
                                         command=None if interactive else _script(cmd, args), cwd=cwd, env=envs,
                                         timeout=timeout)
    return _pty_events(request, opened)


@router.post("/Connect")
async def connect(request: Request) -> Response:
    """Follow a running process again: ``start`` with its pid, then its new output and its end."""
    sandbox_id, owner = data_plane_sandbox(request)
    pid = _pid(await rpc.read_message(request))
    pty = terminals(request).get(sandbox_id, pid)
    if pty is not None:
        return _pty_events(request, pty)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            return await _command_events(request, lambda on_stdout, on_stderr: sandbox.commands.connect(
                pid, replay=False, on_stdout=on_stdout, on_stderr=on_stderr))
        except NotFoundError:
            raise _not_found(pid) from None


@router.post("/List")
async def list_processes(request: Request) -> JSONResponse:
    """The sandbox's running processes (commands and PTYs)."""
    sandbox_id, owner = data_plane_sandbox(request)
    await rpc.read_message(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        running = await sandbox.commands.list()
    processes = [{"pid": info.pid, "config": {"cmd": "/bin/bash", "args": ["-l", "-c", info.cmd], "envs": {},
                                              "cwd": info.cwd}, **({"tag": info.tag} if info.tag else {})}
                 for info in running]
    processes += [{"pid": pty.pid, "config": pty.config, **({"tag": pty.tag} if pty.tag else {})}
                  for pty in terminals(request).running(sandbox_id)]
    return JSONResponse({"processes": processes})


@router.post("/SendSignal")
async def send_signal(request: Request) -> JSONResponse:
    """SIGKILL (the process's whole tree) or SIGTERM."""
    sandbox_id, owner = data_plane_sandbox(request)
    message = await rpc.read_message(request)
    pid = _pid(message)
    signal = {"SIGNAL_SIGKILL": "SIGKILL", "SIGNAL_SIGTERM": "SIGTERM", 9: "SIGKILL", 15: "SIGTERM"}.get(
        rpc.field(message, "signal"))
    if signal is None:
        raise E2BError(400, "signal: SIGNAL_SIGKILL or SIGNAL_SIGTERM", "invalid_argument")
    pty = terminals(request).get(sandbox_id, pid)
    if pty is not None:
        terminals(request).kill(pty)
        return JSONResponse({})
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        if not await sandbox.commands.kill(pid, signal):
            raise _not_found(pid)
    return JSONResponse({})


async def _stdin(request: Request, sandbox_id: str, owner: str | None, pid: int, given: object) -> None:
    given = rpc.need(given, dict, "input")
    pty = terminals(request).get(sandbox_id, pid)
    if pty is not None:
        if "pty" not in given:
            raise E2BError(400, "input of a PTY is pty data", "invalid_argument")
        await pty.terminal.wait_open()
        await pty.terminal.write(rpc.unbase64(given["pty"], "input.pty"))
        return
    if "stdin" not in given:
        raise E2BError(400, "input of a command is stdin data", "invalid_argument")
    data = rpc.unbase64(given["stdin"], "input.stdin")
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            await sandbox.commands.send_stdin(pid, data)
        except NotFoundError:
            raise _not_found(pid) from None


@router.post("/SendInput")
async def send_input(request: Request) -> JSONResponse:
    """Bytes to a command's stdin (started with stdin) or keystrokes to a PTY."""
    sandbox_id, owner = data_plane_sandbox(request)
    message = await rpc.read_message(request)
    await _stdin(request, sandbox_id, owner, _pid(message), rpc.field(message, "input"))
    return JSONResponse({})


@router.post("/StreamInput")
async def stream_input(request: Request) -> Response:
    """A client stream: ``start`` names the process, then ``data`` messages are its input."""
    sandbox_id, owner = data_plane_sandbox(request)
    pid = None
    async for message in rpc.read_envelopes(request):
        if "start" in message:
            pid = _pid(rpc.need(message["start"], dict, "start"))
        elif "data" in message:
            if pid is None:
                raise E2BError(400, "StreamInput: start comes first", "invalid_argument")
            await _stdin(request, sandbox_id, owner, pid, rpc.need(message["data"], dict, "data").get("input"))
        elif "keepalive" not in message:
            raise E2BError(400, "StreamInput messages are start, data or keepalive", "invalid_argument")

    async def answer() -> AsyncIterator[dict]:
        yield {}

    return rpc.stream(answer())


@router.post("/CloseStdin")
async def close_stdin(request: Request) -> JSONResponse:
    """EOF on a command's stdin."""
    sandbox_id, owner = data_plane_sandbox(request)
    pid = _pid(await rpc.read_message(request))
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            await sandbox.commands.close_stdin(pid)
        except NotFoundError:
            raise _not_found(pid) from None
    return JSONResponse({})


@router.post("/Update")
async def update(request: Request) -> JSONResponse:
    """Resize a PTY."""
    sandbox_id, _ = data_plane_sandbox(request)
    message = await rpc.read_message(request)
    pid = _pid(message)
    pty = terminals(request).get(sandbox_id, pid)
    size = rpc.need(rpc.need(rpc.field(message, "pty", {}), dict, "pty").get("size"), dict, "pty.size")
    cols, rows = size.get("cols"), size.get("rows")
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1000 for n in (cols, rows)):
        raise E2BError(400, "pty.size: cols and rows must be 1 to 1000", "invalid_argument")
    if pty is None:
        raise _not_found(pid)
    await pty.terminal.wait_open()
    await pty.terminal.resize(cols, rows)
    return JSONResponse({})
