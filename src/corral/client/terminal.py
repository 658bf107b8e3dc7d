"""``AsyncHostedTerminal``: an interactive terminal in a hosted sandbox, in process or over a WebSocket.

Type with :meth:`write`, change the window with :meth:`resize`, read what the
program prints by iterating (text, as it comes); iteration ends when the
program exits and :attr:`exit_code` is set. Closing it (or leaving ``async
with``) kills the program if it still runs.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from corral.contract.errors import error_for_status, rebuild
from corral.errors import CorralError, ProtocolError, SandboxClosedError
from corral.hosted.terminal import Terminal, TerminalExit
from corral.terminal import check_size


class AsyncHostedTerminal(abc.ABC):
    """A program on a pseudo-terminal in a hosted sandbox."""

    def __init__(self) -> None:
        #: The program's exit status once it ended, else None.
        self.exit_code: int | None = None
        #: The signal that ended it, if any.
        self.signal: int | None = None

    @abc.abstractmethod
    async def write(self, data: str) -> None:
        """Type ``data`` (``"\\x03"`` is Ctrl-C)."""

    @abc.abstractmethod
    async def resize(self, cols: int, rows: int) -> None:
        """Set the window size."""

    @abc.abstractmethod
    async def _next(self) -> str | TerminalExit:
        """The next piece of output, or the exit."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill the program if it still runs and release the connection."""

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        while self.exit_code is None:
            item = await self._next()
            if isinstance(item, TerminalExit):
                self.exit_code, self.signal = item.exit_code, item.signal
                return
            yield item

    async def read_until(self, text: str) -> str:
        """Output up to and including the first ``text`` (SandboxClosedError if the program ends first)."""
        seen = ""
        async for piece in self:
            seen += piece
            if text in seen:
                return seen
        raise SandboxClosedError(f"the terminal's program exited ({self.exit_code}) before printing {text!r}")

    async def __aenter__(self) -> AsyncHostedTerminal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class LocalTerminal(AsyncHostedTerminal):
    """A terminal of a sandbox of this process."""

    def __init__(self, terminal: Terminal, cols: int, rows: int, command: str | None):
        super().__init__()
        self._terminal = terminal
        self._output = terminal.output(cols, rows, command)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._pump = asyncio.ensure_future(self._forward())

    async def open(self) -> LocalTerminal:
        """Return once the terminal is open (or its opening failed)."""
        opened = asyncio.ensure_future(self._terminal.wait_open())
        await asyncio.wait({opened, self._pump}, return_when=asyncio.FIRST_COMPLETED)
        opened.cancel()
        if self._pump.done():
            self._pump.result()
        return self

    async def _forward(self) -> None:
        try:
            async for item in self._output:
                await self._queue.put(item)
        except CorralError as exc:
            await self._queue.put(exc)

    async def write(self, data: str) -> None:
        await self._terminal.write(data.encode("utf-8", "surrogatepass"))

    async def resize(self, cols: int, rows: int) -> None:
        check_size(cols, rows)
        await self._terminal.resize(cols, rows)

    async def _next(self) -> str | TerminalExit:
        item = await self._queue.get()
        if isinstance(item, CorralError):
            raise item
        return item

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(BaseException):
            await self._pump
        await self._output.aclose()


class RemoteTerminal(AsyncHostedTerminal):
    """A terminal over the server's WebSocket."""

    def __init__(self, websocket):
        super().__init__()
        self._websocket = websocket

    async def write(self, data: str) -> None:
        await self._websocket.send(json.dumps({"type": "input", "data": data}))

    async def resize(self, cols: int, rows: int) -> None:
        check_size(cols, rows)
        await self._websocket.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    async def _next(self) -> str | TerminalExit:
        from websockets.exceptions import ConnectionClosed  # noqa: PLC0415 - optional dependency, loaded with it

        try:
            message = json.loads(await self._websocket.recv())
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else "the connection broke"
            if code >= 4000:
                raise _refusal(code - 4000, reason) from None
            raise SandboxClosedError(f"the terminal closed ({code}): {reason}") from None
        kind = message.get("type")
        if kind == "output":
            return message["data"]
        if kind == "exit":
            return TerminalExit(message["exit_code"], message.get("signal"))
        if kind == "error":
            raise rebuild(message["error"].get("type", "CorralError"), message["error"]["message"], None)
        raise ProtocolError(f"unknown terminal message {kind!r}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._websocket.close()


def _refusal(status: int, reason: str) -> CorralError:
    return error_for_status(status)(reason)
