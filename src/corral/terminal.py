"""``AsyncSandbox.terminal()``: a program on a pseudo-terminal in the sandbox (see ``corral.agent.pty``).

Type with :meth:`AsyncTerminal.write`, change the window with :meth:`resize`,
read what the program prints by iterating (text, as it comes) or with
:meth:`read` / :meth:`read_until`; iteration ends when the program exits and
:attr:`exit_code` is set. Output nobody read is kept up to 1 MiB (the oldest
is dropped first). :meth:`kill` (and :meth:`close`, or leaving ``async with``)
kills the program and everything it started.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from corral.channel import Channel
from corral.agent_errors import agent_error
from corral.errors import InvalidInputError, ProtocolError, SandboxClosedError
from corral.protocol import (
    Ack,
    CancelRequest,
    Error,
    ExecDone,
    Output,
    ProcessStarted,
    PtyInputRequest,
    PtyOpenRequest,
    PtyResizeRequest,
    wire,
)

#: Unread output a terminal keeps (characters); older output is dropped past it.
MAX_UNREAD_CHARS = wire.DEFAULT_STDOUT_LIMIT
#: Largest piece of input one ``write`` sends (the agent's limit per message).
MAX_WRITE_BYTES = 64 * 1024


def check_size(cols: object, rows: object) -> None:
    """Refuse a window size outside 1..1000 (InvalidInputError)."""
    for name, value in (("cols", cols), ("rows", rows)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
            raise InvalidInputError(f"{name} must be an integer from 1 to 1000, got {value!r}")


class AsyncTerminal:
    """One program on a pseudo-terminal; see the module docstring."""

    def __init__(self, channel: Channel):
        self._channel = channel
        self._request_id: int | None = None
        self._unread: collections.deque[str] = collections.deque()
        self._unread_chars = 0
        self._changed = asyncio.Event()
        self._failure: BaseException | None = None
        self._task: asyncio.Future | None = None
        #: The program's pid inside the sandbox (known once the agent started it, else None).
        self.pid: int | None = None
        self._started = asyncio.Event()
        #: The program's exit status once it ended (128 + n for signal n), else None.
        self.exit_code: int | None = None
        #: The signal that ended it, if any.
        self.signal: int | None = None

    @classmethod
    async def open(cls, channel: Channel, cols: int = 80, rows: int = 24, command: str | None = None,
                   env: dict[str, str] | None = None, cwd: str | None = None) -> AsyncTerminal:
        """Start ``command`` (an interactive bash if None) on a new terminal; return once it runs (``pid`` set)."""
        check_size(cols, rows)
        if command is not None and (not isinstance(command, str) or len(command.encode()) > wire.MAX_CODE_BYTES):
            raise InvalidInputError(f"command must be a string of at most {wire.MAX_CODE_BYTES} bytes")
        problem = wire.env_problems(dict(env or {}))
        if problem:
            raise InvalidInputError(problem)
        if cwd is not None and wire.path_problem(cwd):
            raise InvalidInputError(f"cwd: {wire.path_problem(cwd)}")
        terminal = cls(channel)

        def build(request_id: int) -> PtyOpenRequest:
            terminal._request_id = request_id
            return PtyOpenRequest(id=request_id, cols=cols, rows=rows, command=command, env=dict(env or {}), cwd=cwd)

        terminal._task = asyncio.ensure_future(terminal._read(channel.request(build)))
        started = asyncio.ensure_future(terminal._started.wait())
        await asyncio.wait({started, terminal._task}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if terminal._task.done() and terminal._failure is not None:
            raise terminal._failure
        return terminal

    @property
    def running(self) -> bool:
        """True until the program's exit was reported (or the terminal failed)."""
        return self._task is not None and not self._task.done()

    async def _read(self, events: AsyncIterator[Any]) -> None:
        try:
            async for event in events:
                if isinstance(event, ProcessStarted):
                    self.pid = event.pid
                    self._started.set()
                elif isinstance(event, Output):
                    self._unread.append(event.data)
                    self._unread_chars += len(event.data)
                    while self._unread_chars > MAX_UNREAD_CHARS and len(self._unread) > 1:
                        self._unread_chars -= len(self._unread.popleft())
                elif isinstance(event, ExecDone):
                    self.exit_code, self.signal = event.exit_code, event.signal
                elif isinstance(event, Error):
                    self._failure = agent_error(event, "terminal")
                else:
                    self._failure = ProtocolError(f"unexpected {event.type!r} event from a terminal")
                    return
                self._wake()
        except Exception as exc:  # the sandbox closed or crashed
            self._failure = exc
        finally:
            self._wake()

    def _wake(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _take(self) -> str:
        text = "".join(self._unread)
        self._unread.clear()
        self._unread_chars = 0
        return text

    async def read(self, timeout: float | None = None) -> str:
        """Output not read yet, waiting for some (up to ``timeout`` s: "" then); "" once the program ended."""
        if not self._unread and self.running:
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        if not self._unread and self._failure is not None:
            raise self._failure
        return self._take()

    async def read_until(self, text: str, timeout: float | None = 30.0) -> str:
        """Output up to and including the first ``text``; the rest stays unread.

        TimeoutError after ``timeout`` s, SandboxClosedError if the program ends first.
        """
        seen = ""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            seen += self._take()
            index = seen.find(text)
            if index >= 0:
                rest = seen[index + len(text):]
                if rest:
                    self._unread.appendleft(rest)
                    self._unread_chars += len(rest)
                return seen[: index + len(text)]
            if not self.running:
                if self._failure is not None:
                    raise self._failure
                raise SandboxClosedError(f"the terminal's program ended before printing {text!r}")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{text!r} did not appear within {timeout} s")
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        while True:
            changed = self._changed
            if self._unread:
                yield self._take()
                continue
            if not self.running:
                if self._failure is not None:
                    raise self._failure
                return
            await changed.wait()

    async def write(self, data: str | bytes) -> None:
        """Type ``data`` (``"\\x03"`` is Ctrl-C); long input goes in pieces of 64 KiB."""
        payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        for start in range(0, len(payload), MAX_WRITE_BYTES) or [0]:
            piece = base64.b64encode(payload[start:start + MAX_WRITE_BYTES]).decode()
            await self._call(lambda request_id: PtyInputRequest(id=request_id, target=self._target(), data_b64=piece))

    async def resize(self, cols: int, rows: int) -> None:
        """Set the window size (the program gets SIGWINCH)."""
        check_size(cols, rows)
        await self._call(lambda request_id: PtyResizeRequest(id=request_id, target=self._target(), cols=cols,
                                                              rows=rows))

    async def kill(self) -> None:
        """Kill the program and everything it started (a no-op once it ended)."""
        if self.running and self._request_id is not None and not self._channel.broken:
            with contextlib.suppress(Exception):
                await self._channel.send_nowait(lambda own_id: CancelRequest(id=own_id, target=self._request_id))

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the program to end; its exit code (TimeoutError after ``timeout`` s)."""
        if self._task is not None:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if self.exit_code is None:
            raise self._failure or ProtocolError("the terminal ended without an exit status")
        return self.exit_code

    async def close(self) -> None:
        """Kill the program if it still runs, and wait (briefly) for its end."""
        await self.kill()
        if self._task is not None and not self._task.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            self._task.cancel()

    def _target(self) -> int:
        if self._request_id is None or not self.running:
            raise SandboxClosedError("the terminal is not open")
        return self._request_id

    async def _call(self, build: Callable[[int], Any]) -> None:
        event = await self._channel.call(build)
        if isinstance(event, Error):
            raise agent_error(event, "terminal")
        if not isinstance(event, Ack):
            raise ProtocolError(f"expected an ack, got {event.type}")

    async def __aenter__(self) -> AsyncTerminal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
