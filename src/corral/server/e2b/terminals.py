"""E2B's PTY processes: corral terminals (:class:`corral.hosted.terminal.Terminal`) run by server tasks.

envd addresses a PTY by pid across calls (``SendInput``, ``Update``,
``SendSignal``) and streams. Here a PTY is a task driving a corral terminal,
under a pid this table gives, above the largest pid a Linux kernel hands out so
it never names a process of the sandbox; killing it cancels the task, which
closes the terminal and kills its program. Its output goes to whoever follows
it at the time; the end goes to every follower.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from dataclasses import dataclass, field

from corral.errors import CorralError, LimitExceededError
from corral.hosted.terminal import Terminal, TerminalExit
from corral.sandbox import AsyncSandbox

#: First PTY pid: above Linux's PID_MAX_LIMIT (4194304), so never a sandbox process's pid.
FIRST_PID = (1 << 22) + 1
#: Most PTYs one sandbox may have open through this layer.
MAX_PER_SANDBOX = 64
#: Output events held for one slow follower before it is dropped.
FOLLOWER_QUEUE = 4096
#: envd's end of a process killed by a signal.
KILLED = {"exitCode": -1, "exited": False, "status": "signal: killed", "error": "signal: killed"}


def exit_end(exit_code: int, signal: int | None, timed_out: bool) -> dict:
    """envd's ``end`` event for an exit code, or for a signal (a timeout kills too)."""
    if signal is not None or timed_out:
        return KILLED
    end = {"exitCode": exit_code, "exited": True, "status": f"exit status {exit_code}"}
    if exit_code != 0:
        end["error"] = f"exit status {exit_code}"
    return end


@dataclass
class Pty:
    """One PTY: what it runs, its terminal, its followers, and how it ended."""

    pid: int
    config: dict
    tag: str | None
    terminal: Terminal
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

    def _publish(self, text: str) -> None:
        event = {"data": {"pty": base64.b64encode(text.encode("utf-8", "replace")).decode()}}
        for queue in list(self.followers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a follower that stopped reading is dropped, not waited for
                self.followers.remove(queue)

    def _finish(self, end: dict) -> None:
        self.end = end
        for queue in self.followers:
            with contextlib.suppress(asyncio.QueueEmpty):
                while queue.full():
                    queue.get_nowait()
            queue.put_nowait({"end": end})
        self.followers.clear()


class Terminals:
    """The PTYs of every sandbox opened through the E2B layer, by sandbox id and pid."""

    def __init__(self) -> None:
        self._by_sandbox: dict[str, dict[int, Pty]] = {}
        self._pids = itertools.count(FIRST_PID)

    def running(self, sandbox_id: str) -> list[Pty]:
        """The sandbox's PTYs that have not ended."""
        return [pty for pty in self._by_sandbox.get(sandbox_id, {}).values() if pty.end is None]

    def get(self, sandbox_id: str, pid: int) -> Pty | None:
        """A running PTY of the sandbox, or None."""
        pty = self._by_sandbox.get(sandbox_id, {}).get(pid)
        return pty if pty is not None and pty.end is None else None

    def open(self, sandbox_id: str, sandbox: AsyncSandbox, config: dict, tag: str | None, *, cols: int, rows: int,
             command: str | None, cwd: str | None, env: dict[str, str], timeout: float | None) -> Pty:
        """Open a terminal running ``command`` (an interactive bash when None); killed after ``timeout`` s."""
        if len(self.running(sandbox_id)) >= MAX_PER_SANDBOX:
            raise LimitExceededError(f"this sandbox already has {MAX_PER_SANDBOX} PTYs open through E2B's API")
        pty = Pty(next(self._pids), config, tag, Terminal(sandbox))
        self._by_sandbox.setdefault(sandbox_id, {})[pty.pid] = pty

        async def drive() -> dict:
            async for item in pty.terminal.output(cols, rows, command, env, cwd):
                if isinstance(item, TerminalExit):
                    return exit_end(item.exit_code, item.signal, False)
                pty._publish(item)
            return KILLED

        async def supervise() -> None:
            try:
                end = await asyncio.wait_for(drive(), timeout)
            except (asyncio.CancelledError, TimeoutError):
                end = KILLED
            except CorralError as exc:
                end = {"exitCode": -1, "exited": False, "status": "error", "error": str(exc)}
            pty._finish(end)
            ptys = self._by_sandbox.get(sandbox_id, {})
            ptys.pop(pty.pid, None)
            if not ptys:
                self._by_sandbox.pop(sandbox_id, None)

        pty.task = asyncio.ensure_future(supervise())
        return pty

    @staticmethod
    def kill(pty: Pty) -> None:
        """Kill the PTY's program (its followers get a killed end)."""
        if pty.task is not None and not pty.task.done():
            pty.task.cancel()
