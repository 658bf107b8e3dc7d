"""The synchronous twins of :mod:`corral.commands`: ``Sandbox.commands`` and its command handles.

Each call runs on the shared background loop of :mod:`corral.sync_bridge`.
Output callbacks of ``run`` are called in the calling thread before it returns;
those of ``start``/``connect``/``run(background=True)`` outlive the call, so they
run on that loop's thread (keep them short; they cannot call the sync API).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from corral.commands import AsyncCommandHandle
from corral.output import OutputCallback
from corral.models import BackgroundCommand, ExecutionResult, OutputEvent, ProcessInfo
from corral.sync_bridge import Relay, bridge

if TYPE_CHECKING:
    from corral.sandbox import AsyncSandbox


class CommandHandle:
    """A running process of the sandbox. See AsyncCommandHandle."""

    def __init__(self, handle: AsyncCommandHandle):
        self._async = handle

    @property
    def pid(self) -> int:
        """The process's pid inside the sandbox."""
        return self._async.pid

    @property
    def log_path(self) -> str:
        """The log file inside the sandbox that also gets all its output."""
        return self._async.log_path

    @property
    def info(self) -> BackgroundCommand:
        """The pid and log file as a plain model."""
        return self._async.info

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process ended, else None."""
        return self._async.exit_code

    @property
    def stdout(self) -> str:
        """Standard output so far."""
        return self._async.stdout

    @property
    def stderr(self) -> str:
        """Standard error so far."""
        return self._async.stderr

    def __iter__(self) -> Iterator[OutputEvent]:
        return bridge.iterate(aiter(self._async))

    def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Wait for the process to end; its output and exit code."""
        return bridge.call(self._async.wait(timeout))

    def kill(self, signal: str | int = "SIGKILL") -> bool:
        """Signal the process (SIGKILL: its whole tree); False if it already ended."""
        return bridge.call(self._async.kill(signal))

    def send_stdin(self, data: bytes | str) -> None:
        """Write to the process's stdin (started with ``stdin=True``)."""
        bridge.call(self._async.send_stdin(data))

    def close_stdin(self) -> None:
        """Close the process's stdin."""
        bridge.call(self._async.close_stdin())

    def disconnect(self) -> None:
        """Stop receiving output; the process keeps running."""
        bridge.call(self._async.disconnect())


class Commands:
    """Shell commands in the sandbox. See AsyncCommands."""

    def __init__(self, sandbox: AsyncSandbox):
        self._sandbox = sandbox

    def start(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None, stdin: bool = False,
              timeout: float | None = None, tag: str | None = None, on_stdout: OutputCallback | None = None,
              on_stderr: OutputCallback | None = None) -> CommandHandle:
        """Start ``cmd`` in the background; returns its handle at once."""
        return CommandHandle(bridge.call(self._sandbox.commands.start(
            cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout, tag=tag, on_stdout=on_stdout, on_stderr=on_stderr)))

    def connect(self, pid: int, *, replay: bool = True, on_stdout: OutputCallback | None = None,
                on_stderr: OutputCallback | None = None) -> CommandHandle:
        """A new handle on running process ``pid``."""
        return CommandHandle(bridge.call(self._sandbox.commands.connect(
            pid, replay=replay, on_stdout=on_stdout, on_stderr=on_stderr)))

    def list(self) -> list[ProcessInfo]:
        """The processes started with ``start`` still running."""
        return bridge.call(self._sandbox.commands.list())

    def kill(self, pid: int, signal: str | int = "SIGKILL") -> bool:
        """Signal process ``pid``; False if no such process runs."""
        return bridge.call(self._sandbox.commands.kill(pid, signal))

    def send_stdin(self, pid: int, data: bytes | str) -> None:
        """Write ``data`` to the stdin of process ``pid``."""
        bridge.call(self._sandbox.commands.send_stdin(pid, data))

    def close_stdin(self, pid: int) -> None:
        """Close the stdin of process ``pid``."""
        bridge.call(self._sandbox.commands.close_stdin(pid))

    def run(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
            stdin: bytes | str | None = None, timeout: float | None = None, background: bool = False,
            on_stdout: OutputCallback | None = None,
            on_stderr: OutputCallback | None = None) -> ExecutionResult | CommandHandle:
        """Run ``cmd`` with bash; returns its output and exit code.

        Callbacks are called in this thread; with ``background`` (the handle outlives the call) on corral's loop.
        """
        relay = Relay()
        if not background:
            on_stdout, on_stderr = relay.wrap(on_stdout), relay.wrap(on_stderr)
        outcome = bridge.call(self._sandbox.commands.run(cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout,
                                                         background=background, on_stdout=on_stdout,
                                                         on_stderr=on_stderr), relay)
        return CommandHandle(outcome) if isinstance(outcome, AsyncCommandHandle) else outcome

    def stream(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
               stdin: bytes | str | None = None,
               timeout: float | None = None) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``cmd`` with bash; yield OutputEvents as they come, then the ExecutionResult."""
        return bridge.iterate(self._sandbox.commands.stream(cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout))
