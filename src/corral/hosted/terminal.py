"""The server's end of an interactive terminal, on the sandbox's public terminal API (``corral.terminal``).

:meth:`Terminal.output` opens the terminal and yields what the program writes,
then its exit; :meth:`write` and :meth:`resize` act on the open terminal.
Closing the iterator early kills the program.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from corral.errors import SandboxClosedError
from corral.sandbox import AsyncSandbox
from corral.terminal import AsyncTerminal


@dataclass(frozen=True)
class TerminalExit:
    """The terminal's program ended."""

    exit_code: int
    signal: int | None


class Terminal:
    """One pseudo-terminal in a running sandbox."""

    def __init__(self, sandbox: AsyncSandbox):
        if sandbox.closed:
            raise SandboxClosedError("the sandbox is closed")
        self._sandbox = sandbox
        self._terminal: AsyncTerminal | None = None
        self._opened = asyncio.Event()

    async def output(self, cols: int, rows: int, command: str | None = None,
                     env: dict[str, str] | None = None, cwd: str | None = None) -> AsyncIterator[str | TerminalExit]:
        """Open the terminal; yield its output text as it comes, then a TerminalExit."""
        terminal = await self._sandbox.terminal(cols=cols, rows=rows, command=command, env=env, cwd=cwd)
        self._terminal = terminal
        self._opened.set()
        finished = False
        try:
            async for text in terminal:
                yield text
            finished = True
            yield TerminalExit(await terminal.wait(), terminal.signal)
        finally:
            if not finished:
                await asyncio.shield(terminal.close())

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the terminal."""
        await self._open_terminal().write(data)

    async def resize(self, cols: int, rows: int) -> None:
        """Set the terminal's window size."""
        await self._open_terminal().resize(cols, rows)

    async def wait_open(self) -> None:
        """Return once the open request was sent."""
        await self._opened.wait()

    def _open_terminal(self) -> AsyncTerminal:
        if self._terminal is None:
            raise SandboxClosedError("the terminal is not open")
        return self._terminal


def open_terminal(sandbox: AsyncSandbox) -> Terminal:
    """A terminal in ``sandbox``: through its public terminal API, or, for a sandbox served from a
    cluster node (corral.cluster.served), the one its node runs (``server_terminal``)."""
    remote = getattr(sandbox, "server_terminal", None)
    return remote() if remote is not None else Terminal(sandbox)
