"""Shell commands in a sandbox: ``commands.run`` to completion, or ``commands.start`` with a handle.

A handle (:class:`AsyncCommandHandle`) belongs to a process of the sandbox
started with the agent's ``process_start`` (see docs/protocol.md): it streams
the process's output as it comes, feeds its stdin, signals it and waits for
its exit. Another handle on the same process comes from ``commands.connect``;
dropping or disconnecting a handle leaves the process running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from corral.channel import Channel
from corral.agent_errors import agent_error
from corral.errors import InvalidInputError, NotFoundError, ProtocolError
from corral.execution import Capture, RunOptions
from corral.output import OutputCallback
from corral.models import BackgroundCommand, ExecutionResult, OutputEvent, ProcessInfo, SandboxSpec, TimingBreakdown
from corral.protocol import (
    Ack,
    CancelRequest,
    Error,
    ExecDone,
    Output,
    ProcessAttachRequest,
    ProcessCloseStdinRequest,
    ProcessInputRequest,
    ProcessListing,
    ProcessListRequest,
    ProcessSignalRequest,
    ProcessStarted,
    ProcessStartRequest,
    wire,
)

#: Signal names ``kill`` accepts, and their numbers.
SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGKILL": 9, "SIGTERM": 15}


class CommandHost(Protocol):
    """What commands need from the sandbox they run in (``AsyncSandbox`` is one)."""

    spec: SandboxSpec
    commands: AsyncCommands

    @property
    def isolation(self) -> str | None:
        """The isolation level in use."""
        ...

    @property
    def channel(self) -> Channel:
        """The started sandbox's channel to its agent."""
        ...

    def run_options(self, code: str, *, language: str | None = None, session: bool = False,
                    timeout: float | None = None, env: dict[str, str] | None = None, cwd: str | None = None,
                    stdin: bytes | str | None = None) -> RunOptions:
        """One run's checked input."""
        ...

    def run_env(self, env: dict[str, str]) -> dict[str, str]:
        """A run's environment with the egress proxy's settings."""
        ...

    def events(self, options: RunOptions) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """Run prepared options: output as it comes, then the result."""
        ...

    async def execute(self, options: RunOptions, *, on_stdout: OutputCallback | None = None,
                      on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run prepared options to their end."""
        ...


class AsyncCommandHandle:
    """A running process of the sandbox: its output as it comes, its stdin, its exit.

    Output is kept up to the sandbox's ``stdout_limit``/``stderr_limit`` (what
    ``wait()`` returns and iteration yields); callbacks see all of it.
    """

    def __init__(self, sandbox: CommandHost, channel: Channel, events: AsyncIterator[Any], request_id: int,
                 started: ProcessStarted, on_stdout: OutputCallback | None, on_stderr: OutputCallback | None):
        self._sandbox = sandbox
        self._channel = channel
        self._events_source = events
        self._request_id = request_id
        #: The process's pid inside the sandbox.
        self.pid = started.pid
        #: The log file inside the sandbox that also gets all its output (stdout and stderr together).
        self.log_path = started.log_path
        self._callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        limits = sandbox.spec.limits
        self._captured = {"stdout": Capture(limits.stdout_limit), "stderr": Capture(limits.stderr_limit)}
        self._events: list[OutputEvent] = []
        self._done: ExecDone | None = None
        self._failure: BaseException | None = None
        self._detached = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    @property
    def info(self) -> BackgroundCommand:
        """The pid and log file as a plain model (what a server answers for a background command)."""
        return BackgroundCommand(pid=self.pid, log_path=self.log_path)

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process ended (128 + n for signal n), else None."""
        return self._done.exit_code if self._done is not None else None

    @property
    def stdout(self) -> str:
        """Standard output so far."""
        return self._captured["stdout"].text

    @property
    def stderr(self) -> str:
        """Standard error so far."""
        return self._captured["stderr"].text

    async def _read(self) -> None:
        try:
            async for event in self._events_source:
                if isinstance(event, Output):
                    text = self._captured[event.stream].add(event.data)
                    if text:
                        self._events.append(OutputEvent(stream=event.stream, data=text))
                    callback = self._callbacks[event.stream]
                    if callback is not None:
                        outcome = callback(event.data)
                        if asyncio.iscoroutine(outcome):
                            await outcome
                elif isinstance(event, ExecDone):
                    self._done = event
                elif isinstance(event, Ack):  # detached
                    return
                elif isinstance(event, Error):
                    self._failure = agent_error(event, "process")
                self._wake()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the sandbox closed or crashed, or a callback raised
            self._failure = exc
        finally:
            await self._stop_stream()
            self._wake(final=True)

    async def _stop_stream(self) -> None:
        """Stop listening; if the process runs on, detach so that the agent stops sending its output."""
        await self._events_source.aclose()
        if self._done is None and self._failure is not None and not self._channel.broken:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._channel.send_nowait(
                    lambda own_id: CancelRequest(id=own_id, target=self._request_id)))

    def _wake(self, final: bool = False) -> None:
        old, self._wakeup = self._wakeup, asyncio.Event()
        if final:
            self._wakeup.set()
        old.set()

    def __aiter__(self) -> AsyncIterator[OutputEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[OutputEvent]:
        """Output events from the start of this handle, then as they come, until the process ends."""
        index = 0
        while True:
            wakeup = self._wakeup
            while index < len(self._events):
                yield self._events[index]
                index += 1
            if self._task.done():
                return
            await wakeup.wait()

    async def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Wait for the process to end; its output and exit code (TimeoutError after ``timeout`` s)."""
        if self._detached:
            raise InvalidInputError("this handle was disconnected: commands.connect(pid) gives a new one")
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if self._failure is not None:
            raise self._failure
        if self._done is None:
            raise ProtocolError("the process stream ended without an exit status")
        done = self._done
        return ExecutionResult(
            stdout=self.stdout, stderr=self.stderr, exit_code=done.exit_code, signal=done.signal,
            timed_out=done.timed_out, stdout_truncated=self._captured["stdout"].truncated,
            stderr_truncated=self._captured["stderr"].truncated, language="shell",
            isolation=self._sandbox.isolation or "process",
            timing=TimingBreakdown(process_ms=round(done.process_ms, 3), execute_ms=round(done.process_ms, 3),
                                   total_ms=round(done.process_ms, 3)),
        )

    async def kill(self, signal: str | int = "SIGKILL") -> bool:
        """Signal the process (SIGKILL: its whole tree); False if it already ended."""
        return await self._sandbox.commands.kill(self.pid, signal)

    async def send_stdin(self, data: bytes | str) -> None:
        """Write to the process's stdin (it must have been started with ``stdin=True``)."""
        await self._sandbox.commands.send_stdin(self.pid, data)

    async def close_stdin(self) -> None:
        """Close the process's stdin: it reads EOF after what was sent."""
        await self._sandbox.commands.close_stdin(self.pid)

    async def disconnect(self) -> None:
        """Stop receiving output; the process keeps running (``commands.connect(pid)`` reattaches)."""
        if self._detached or self._task.done():
            self._detached = True
            return
        self._detached = True
        with contextlib.suppress(Exception):
            await self._channel.send_nowait(lambda own_id: CancelRequest(id=own_id, target=self._request_id))
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        if not self._task.done():
            self._task.cancel()


class AsyncCommands:
    """Shell commands in the sandbox: each one a fresh process, sharing the sandbox's files."""

    def __init__(self, sandbox: CommandHost):
        self._sandbox = sandbox

    async def _attach(self, build: Callable[[int], Any], on_stdout: OutputCallback | None,
                      on_stderr: OutputCallback | None) -> AsyncCommandHandle:
        sent: list[int] = []

        def numbered(request_id: int) -> Any:
            sent.append(request_id)
            return build(request_id)

        channel = self._sandbox.channel
        events = channel.request(numbered)
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        if isinstance(first, Error):
            await events.aclose()
            raise agent_error(first, "process")
        if not isinstance(first, ProcessStarted):
            await events.aclose()
            raise ProtocolError(f"expected process_started, got {first.type}")
        return AsyncCommandHandle(self._sandbox, channel, events, sent[0], first, on_stdout, on_stderr)

    async def start(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
                    stdin: bool = False, timeout: float | None = None, tag: str | None = None,
                    on_stdout: OutputCallback | None = None,
                    on_stderr: OutputCallback | None = None) -> AsyncCommandHandle:
        """Start ``bash -c cmd`` in the background and return its handle at once.

        It runs until it exits, is killed, ``timeout`` seconds pass (None: no limit) or the
        sandbox is closed. ``stdin=True`` gives it a pipe for ``send_stdin``; otherwise it reads
        nothing. ``run(cmd, background=True)`` is the same.
        """
        sandbox = self._sandbox
        if not isinstance(stdin, bool):
            raise InvalidInputError("stdin of a started command is True (a pipe for send_stdin) or False")
        options = sandbox.run_options(cmd, language="shell", timeout=timeout, env=env, cwd=cwd)
        run_env = sandbox.run_env(options.env)
        timeout_ms = max(1, int(timeout * 1000)) if timeout is not None else 0
        if tag is not None and (not isinstance(tag, str) or len(tag) > 256):
            raise InvalidInputError("tag must be a string of at most 256 characters")
        return await self._attach(
            lambda request_id: ProcessStartRequest(id=request_id, cmd=cmd, cwd=cwd, env=run_env, stdin=stdin,
                                                   tag=tag, timeout_ms=timeout_ms),
            on_stdout, on_stderr,
        )

    async def connect(self, pid: int, *, replay: bool = True, on_stdout: OutputCallback | None = None,
                      on_stderr: OutputCallback | None = None) -> AsyncCommandHandle:
        """A new handle on running process ``pid`` (NotFoundError if none).

        ``replay``: its output starts with the latest output the sandbox kept (up to 64 KiB),
        else only output produced from now on.
        """
        _check_pid(pid)
        return await self._attach(lambda request_id: ProcessAttachRequest(id=request_id, pid=pid, replay=replay),
                                  on_stdout, on_stderr)

    async def list(self) -> list[ProcessInfo]:
        """The processes started with ``start`` (or ``run(..., background=True)``) still running."""
        event = await self._sandbox.channel.call(lambda request_id: ProcessListRequest(id=request_id))
        if isinstance(event, Error):
            raise agent_error(event, "process")
        if not isinstance(event, ProcessListing):
            raise ProtocolError(f"expected process_list, got {event.type}")
        return [ProcessInfo(**process.model_dump()) for process in event.processes]

    async def _pid_call(self, build: Callable[[int], Any]) -> None:
        event = await self._sandbox.channel.call(build)
        if isinstance(event, Error):
            raise agent_error(event, "process")

    async def kill(self, pid: int, signal: str | int = "SIGKILL") -> bool:
        """Signal process ``pid`` (SIGKILL: its whole tree); False if no such process runs."""
        _check_pid(pid)
        number = SIGNALS.get(signal) if isinstance(signal, str) else signal
        if number not in SIGNALS.values() or isinstance(number, bool):
            raise InvalidInputError(f"signal must be one of {', '.join(SIGNALS)} (or their numbers)")
        try:
            await self._pid_call(lambda request_id: ProcessSignalRequest(id=request_id, pid=pid, signal=number))
        except NotFoundError:
            return False
        return True

    async def send_stdin(self, pid: int, data: bytes | str) -> None:
        """Write ``data`` to the stdin of process ``pid`` (started with ``stdin=True``)."""
        _check_pid(pid)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if len(payload) > wire.MAX_STDIN_BYTES:
            raise InvalidInputError(f"stdin data is larger than {wire.MAX_STDIN_BYTES} bytes")
        encoded = base64.b64encode(payload).decode()
        await self._pid_call(lambda request_id: ProcessInputRequest(id=request_id, pid=pid, data_b64=encoded))

    async def close_stdin(self, pid: int) -> None:
        """Close the stdin of process ``pid`` (EOF after what was sent)."""
        _check_pid(pid)
        await self._pid_call(lambda request_id: ProcessCloseStdinRequest(id=request_id, pid=pid))

    async def run(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
                  stdin: bytes | str | None = None, timeout: float | None = None, background: bool = False,
                  on_stdout: OutputCallback | None = None,
                  on_stderr: OutputCallback | None = None) -> ExecutionResult | AsyncCommandHandle:
        """Run ``cmd`` with bash; returns its output and exit code (``background``: see :meth:`start`)."""
        if background:
            if stdin is not None:
                raise InvalidInputError("a background command takes no stdin data: start(..., stdin=True) and "
                                        "send_stdin")
            return await self.start(cmd, cwd=cwd, env=env, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr)
        return await self._sandbox.execute(self._options(cmd, cwd, env, stdin, timeout), on_stdout=on_stdout,
                                           on_stderr=on_stderr)

    def stream(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
               stdin: bytes | str | None = None,
               timeout: float | None = None) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """Run ``cmd`` with bash like :meth:`run`; yield OutputEvents as they come, then the ExecutionResult.

        Input is checked at the call (InvalidInputError before anything runs); closing the
        iterator early kills the command.
        """
        return self._sandbox.events(self._options(cmd, cwd, env, stdin, timeout))

    def _options(self, cmd: str, cwd: str | None, env: dict[str, str] | None, stdin: bytes | str | None,
                 timeout: float | None) -> RunOptions:
        return self._sandbox.run_options(cmd, language="shell", timeout=timeout, env=env, cwd=cwd, stdin=stdin)


def _check_pid(pid: object) -> None:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InvalidInputError(f"pid must be a positive integer, got {pid!r}")
