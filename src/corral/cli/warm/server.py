"""The warm daemon itself (``python -m corral.cli.warm.server``, started by :func:`corral.cli.warm.client.start`).

It serves one Unix socket in this user's private directory, one request per
connection, as JSON lines. ``{"op": "run", ...}`` is answered ``{"ready":
true}``; once the client says ``go`` (so a client that gave up waiting and runs
the program itself never has it run twice), the daemon runs it with
:func:`corral.arun` (its shared warm sandboxes stay warm between runs) and sends ``{"out": text}`` / ``{"err": text}`` /
``{"notes": [...]}`` as the run goes, and last ``{"exit": code, "stdout": ...,
"notes": [...]}`` or ``{"fail": message, "code": exit code}``; a client that
closes its end cancels its run. ``{"refused": reason}`` tells a client to run
the program itself. ``{"op": "status"}`` and ``{"op": "stop"}`` answer one frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import socket
import struct
import sys
import time
import traceback
from typing import Any

import corral
from corral.cli.run import OPTIONS, ending, failure_of, port_notes, run_keywords
from corral.cli.run_args import EXIT_CORRAL_ERROR, Program
from corral.cli.warm import address
from corral.protocol import wire

#: A request line's limit: the largest program and stdin, base64'd, and the options.
REQUEST_LIMIT = 2 * (wire.MAX_CODE_BYTES + wire.MAX_STDIN_BYTES) + (1 << 20)
#: The options a run request may carry (``corral run``'s, as parse_fast names them, but the program's own).
RUN_OPTIONS = OPTIONS | {"json_output"}
_PEERCRED = struct.Struct("3i")


class Daemon:
    """The daemon's state: what it serves and how busy it is."""

    def __init__(self, idle_s: float):
        self.idle_s = idle_s
        self.fingerprint = address.fingerprint()
        self.settings = address.settings()
        self.served = 0
        self.running = 0
        self.connections = 0
        self.last_activity = time.monotonic()
        self.stopping = asyncio.Event()

    def status(self) -> dict[str, Any]:
        """What ``corral daemon status`` shows."""
        return {"pid": os.getpid(), "served": self.served, "running": self.running, "idle_s": self.idle_s,
                "socket": address.socket_path()}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection."""
        self.connections += 1
        try:
            if not _same_user(writer.get_extra_info("socket")):
                return
            try:
                request = json.loads(await reader.readline())
            except (ValueError, asyncio.LimitOverrunError, ConnectionError):
                return
            op = request.get("op") if isinstance(request, dict) else None
            if op == "status":
                _send(writer, {"status": self.status()})
            elif op == "stop":
                _send(writer, {"stopping": True})
                self.stopping.set()
            elif op == "run":
                await self._run(request, reader, writer)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.connections -= 1
            self.last_activity = time.monotonic()
            writer.close()

    async def _run(self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refusal = self._refusal(request)
        if refusal is not None:
            _send(writer, {"refused": refusal})
            return
        given = request["program"]
        try:
            stdin = None if given["stdin"] is None else base64.b64decode(given["stdin"], validate=True)
        except ValueError:
            _send(writer, {"refused": "a malformed run request"})
            return
        program = Program(given["text"], given["language"], stdin)
        options = dict(request["options"])
        json_output = bool(options.pop("json_output", False))
        _send(writer, {"ready": True})
        if await reader.readline() != address.GO:  # the client gave up waiting, and runs the program itself
            return
        self.served += 1
        try:
            keywords = run_keywords(program, options)
        except Exception as exc:
            _send(writer, _failure(exc))
            return
        self.running += 1
        try:
            await self._follow(keywords, options, json_output, reader, writer)
        finally:
            self.running -= 1

    async def _follow(self, keywords: dict[str, Any], options: dict[str, Any], json_output: bool,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run the program, streaming its output to the client; cancel it if the client goes away."""
        running = asyncio.ensure_future(corral.arun(
            **keywords,
            on_stdout=None if json_output else (lambda text: _send(writer, {"out": text})),
            on_stderr=None if json_output else (lambda text: _send(writer, {"err": text})),
            on_exposed=lambda ports: _send(writer, {"notes": port_notes(ports)})))
        hung_up = asyncio.ensure_future(reader.read(1))  # the client sends nothing more: EOF means it is gone
        done, _ = await asyncio.wait({running, hung_up}, return_when=asyncio.FIRST_COMPLETED)
        if running not in done:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
            return
        hung_up.cancel()
        try:
            result = running.result()
        except Exception as exc:
            _send(writer, _failure(exc))
            return
        end = ending(result, options.get("timeout"), options.get("memory"), json_output)
        _send(writer, {"exit": end.exit_code, "stdout": end.stdout, "notes": end.notes})

    def _refusal(self, request: dict[str, Any]) -> str | None:
        if request.get("fingerprint") != self.fingerprint:
            return "another corral (version, interpreter or source files) started this daemon"
        if request.get("settings") != self.settings:
            return "this daemon was started with other CORRAL_* settings or PATH"
        program, options = request.get("program"), request.get("options")
        if not isinstance(program, dict) or not isinstance(options, dict) or not set(options) <= RUN_OPTIONS:
            return "a malformed run request"
        if not isinstance(program.get("text"), str) or not isinstance(program.get("language"), str):
            return "a malformed run request"
        if program.get("stdin") is not None and not isinstance(program.get("stdin"), str):
            return "a malformed run request"
        return None

    async def serve(self, path: str) -> None:
        """Listen on ``path`` until stopped or idle for ``idle_s`` seconds."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = await asyncio.start_unix_server(self.handle, path=path, limit=REQUEST_LIMIT)
        os.chmod(path, 0o600)
        try:
            while not self.stopping.is_set():
                quiet_for = time.monotonic() - self.last_activity
                if self.connections == 0 and quiet_for >= self.idle_s:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=max(0.05, min(1.0, self.idle_s - quiet_for)))
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _failure(exc: Exception) -> dict[str, Any]:
    failure = failure_of(exc)
    if failure is None:
        traceback.print_exception(exc)
        failure = (f"the warm daemon failed: {type(exc).__name__}: {exc} (see {address.log_path()})", EXIT_CORRAL_ERROR)
    return {"fail": failure[0], "code": failure[1]}


def _send(writer: asyncio.StreamWriter, frame: dict[str, Any]) -> None:
    if not writer.is_closing():
        writer.write(json.dumps(frame).encode() + b"\n")


def _same_user(connection: socket.socket | None) -> bool:
    """Whether the peer of ``connection`` runs as this process's user (SO_PEERCRED)."""
    if connection is None:
        return False
    _, uid, _ = _PEERCRED.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid == os.geteuid()


def main() -> int:
    """Become the daemon: take the lock (else exit: one runs), log to the daemon's log, serve until idle."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # nothing of the client that started us (its pipes) stays open
    os.chdir("/")
    problem = address.make_private_dir()
    if problem is not None:
        print(f"corral daemon: {problem}", file=sys.stderr)
        return 1
    lock = os.open(address.lock_path(), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another daemon serves this directory
    log = os.open(address.log_path(), os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.dup2(log, 2)
    os.close(log)
    asyncio.run(Daemon(address.idle_seconds()).serve(address.socket_path()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
