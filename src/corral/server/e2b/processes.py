"""E2B's processes over corral: each one a server task running a command or a terminal in the sandbox.

envd addresses processes by pid across calls and streams: a process started
by ``Start`` outlives that stream (``background=True`` drops it), ``Connect``
follows it again, ``SendSignal`` kills it, ``List`` shows it. Here a process is
a task on the server driving corral's ``commands.run`` (or a
:class:`corral.server.terminal.Terminal` for a PTY); its pid is a number this
table gives (not the pid inside the sandbox), and killing it cancels the
task, which kills the command in the sandbox. Output goes to whoever follows
the process at the time; the end goes to every follower.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from corral.errors import CorralError, LimitExceededError
from corral.sandbox import AsyncSandbox
from corral.server.terminal import Terminal, TerminalExit

#: Most processes one sandbox may have running through this layer.
MAX_PER_SANDBOX = 256
#: Output events held for one slow follower before it is dropped from the process.
FOLLOWER_QUEUE = 4096


@dataclass
class Process:
    """One process: what it runs, its followers, and how it ended."""

    pid: int
    config: dict
    tag: str | None
    terminal: Terminal | None = None
    task: asyncio.Task | None = None
    followers: list[asyncio.Queue] = field(default_factory=list)
    end: dict | None = None

    def follow(self) -> asyncio.Queue:
        """A queue that receives ``{"data": ...}`` events, then the ``{"end": ...}`` event."""
        queue: asyncio.Queue = asyncio.Queue(FOLLOWER_QUEUE)
        if self.end is not None:
            queue.put_nowait({"end": self.end})
        else:
            self.followers.append(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue) -> None:
        """Stop delivering to ``queue``."""
        with contextlib.suppress(ValueError):
            self.followers.remove(queue)

    def publish(self, event: dict) -> None:
        """Deliver an event to every follower (one that fell too far behind is dropped)."""
        for queue in list(self.followers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.followers.remove(queue)

    def finish(self, end: dict) -> None:
        """Record the end and deliver it (it always fits: a queue is never left full of output)."""
        self.end = end
        for queue in self.followers:
            with contextlib.suppress(asyncio.QueueEmpty):
                while queue.full():
                    queue.get_nowait()
            queue.put_nowait({"end": end})
        self.followers.clear()


def exit_end(exit_code: int, signal: int | None, timed_out: bool) -> dict:
    """envd's ``end`` event for an exit code or a signal."""
    if signal is not None or timed_out or exit_code < 0:
        return {"exitCode": -1, "exited": False, "status": "signal: killed", "error": "signal: killed"}
    end = {"exitCode": exit_code, "exited": True, "status": f"exit status {exit_code}"}
    if exit_code != 0:
        end["error"] = f"exit status {exit_code}"
    return end


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "replace")).decode()


KILLED = {"exitCode": -1, "exited": False, "status": "signal: killed", "error": "signal: killed"}


class ProcessTable:
    """The processes of every sandbox started through the E2B layer, by sandbox id and pid."""

    def __init__(self) -> None:
        self._by_sandbox: dict[str, dict[int, Process]] = {}
        self._pids = itertools.count(1000)

    def running(self, sandbox_id: str) -> list[Process]:
        """The sandbox's processes that have not ended."""
        return [process for process in self._by_sandbox.get(sandbox_id, {}).values() if process.end is None]

    def get(self, sandbox_id: str, pid: int) -> Process | None:
        """A running process of the sandbox, or None."""
        process = self._by_sandbox.get(sandbox_id, {}).get(pid)
        return process if process is not None and process.end is None else None

    def start_command(self, sandbox_id: str, sandbox: AsyncSandbox, config: dict, tag: str | None, *,
                      script: str, cwd: str | None, env: dict[str, str], timeout: float | None) -> Process:
        """Run ``script`` with bash in the sandbox as a new process."""
        process = self._new(sandbox_id, config, tag)

        async def run() -> dict:
            result = await sandbox.commands.run(
                script, cwd=cwd, env=env, timeout=timeout,
                on_stdout=lambda data: process.publish({"data": {"stdout": _b64(data)}}),
                on_stderr=lambda data: process.publish({"data": {"stderr": _b64(data)}}),
            )
            return exit_end(result.exit_code, result.signal, result.timed_out)

        self._launch(sandbox_id, process, run)
        return process

    def start_terminal(self, sandbox_id: str, sandbox: AsyncSandbox, config: dict, tag: str | None, *,
                       cols: int, rows: int, command: str | None, cwd: str | None, env: dict[str, str],
                       timeout: float | None) -> Process:
        """Open a pseudo-terminal running ``command`` (an interactive bash when None) as a new process."""
        process = self._new(sandbox_id, config, tag)
        process.terminal = Terminal(sandbox)

        async def run() -> dict:
            async def drive() -> dict:
                async for item in process.terminal.output(cols, rows, command, env, cwd):
                    if isinstance(item, TerminalExit):
                        return exit_end(item.exit_code, item.signal, False)
                    process.publish({"data": {"pty": _b64(item)}})
                return KILLED

            if timeout is None:
                return await drive()
            try:
                return await asyncio.wait_for(drive(), timeout)
            except TimeoutError:
                return KILLED

        self._launch(sandbox_id, process, run)
        return process

    def kill(self, process: Process) -> None:
        """Kill the process (its task is cancelled; followers get a killed end)."""
        if process.task is not None and not process.task.done():
            process.task.cancel()

    def _new(self, sandbox_id: str, config: dict, tag: str | None) -> Process:
        processes = self._by_sandbox.setdefault(sandbox_id, {})
        if len(self.running(sandbox_id)) >= MAX_PER_SANDBOX:
            raise LimitExceededError(f"this sandbox already runs {MAX_PER_SANDBOX} processes started through E2B's API")
        process = Process(next(self._pids), config, tag)
        processes[process.pid] = process
        return process

    def _launch(self, sandbox_id: str, process: Process, run: Callable[[], Awaitable[dict]]) -> None:
        async def supervise() -> None:
            try:
                end = await run()
            except asyncio.CancelledError:
                end = KILLED
            except CorralError as exc:
                end = {"exitCode": -1, "exited": False, "status": "error", "error": str(exc)}
            process.finish(end)
            processes = self._by_sandbox.get(sandbox_id, {})
            processes.pop(process.pid, None)
            if not processes:
                self._by_sandbox.pop(sandbox_id, None)

        process.task = asyncio.ensure_future(supervise())


async def events(process: Process, queue: asyncio.Queue, keepalive_s: float) -> AsyncIterator[dict]:
    """envd ``event`` messages for a follower: ``start`` first, data as it comes, keepalives, ``end`` last."""
    try:
        yield {"event": {"start": {"pid": process.pid}}}
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield {"event": {"keepalive": {}}}
                continue
            yield {"event": item}
            if "end" in item:
                return
    finally:
        process.unfollow(queue)
