"""The host end of an interactive terminal in a sandbox (see ``corral.agent.pty``).

:meth:`Terminal.output` opens the terminal and yields what the program writes,
then its exit; :meth:`write` and :meth:`resize` act on the open terminal.
Closing the iterator early kills the program.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from corral.errors import InvalidInputError, ProtocolError, SandboxClosedError
from corral.protocol import (
    Ack,
    CancelRequest,
    Error,
    ExecDone,
    Output,
    PtyInputRequest,
    PtyOpenRequest,
    PtyResizeRequest,
)
from corral.sandbox import AsyncSandbox


@dataclass(frozen=True)
class TerminalExit:
    """The terminal's program ended."""

    exit_code: int
    signal: int | None


class Terminal:
    """One pseudo-terminal in a running sandbox."""

    def __init__(self, sandbox: AsyncSandbox):
        self._channel = sandbox._ready_lease().channel
        self._request_id: int | None = None
        self._opened = asyncio.Event()

    async def output(self, cols: int, rows: int, command: str | None = None,
                     env: dict[str, str] | None = None, cwd: str | None = None) -> AsyncIterator[str | TerminalExit]:
        """Open the terminal; yield its output text as it comes, then a TerminalExit."""
        def build(request_id: int) -> PtyOpenRequest:
            self._request_id = request_id
            self._opened.set()
            return PtyOpenRequest(id=request_id, cols=cols, rows=rows, command=command, env=env or {}, cwd=cwd)

        events = self._channel.request(build)
        finished = False
        try:
            async for event in events:
                if isinstance(event, Output):
                    yield event.data
                elif isinstance(event, ExecDone):
                    finished = True
                    yield TerminalExit(event.exit_code, event.signal)
                    return
                elif isinstance(event, Error):
                    finished = True
                    raise _error(event)
                else:
                    raise ProtocolError(f"unexpected {event.type!r} event from a terminal")
        finally:
            await events.aclose()
            if not finished and self._request_id is not None and not self._channel.broken:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._channel.send_nowait(
                        lambda own_id: CancelRequest(id=own_id, target=self._request_id)))

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the terminal."""
        await self._call(lambda request_id: PtyInputRequest(
            id=request_id, target=self._target(), data_b64=base64.b64encode(data).decode()))

    async def resize(self, cols: int, rows: int) -> None:
        """Set the terminal's window size."""
        await self._call(lambda request_id: PtyResizeRequest(id=request_id, target=self._target(), cols=cols,
                                                              rows=rows))

    async def wait_open(self) -> None:
        """Return once the open request was sent."""
        await self._opened.wait()

    def _target(self) -> int:
        if self._request_id is None:
            raise SandboxClosedError("the terminal is not open")
        return self._request_id

    async def _call(self, build) -> None:
        event = await self._channel.call(build)
        if isinstance(event, Error):
            raise _error(event)
        if not isinstance(event, Ack):
            raise ProtocolError(f"expected an ack, got {event.type}")


def open_terminal(sandbox: AsyncSandbox) -> Terminal:
    """A terminal in ``sandbox``: on its channel, or, for a sandbox with a terminal of its own (one on a
    cluster node, corral.cluster.served), that one."""
    own = getattr(sandbox, "terminal", None)
    return own() if callable(own) else Terminal(sandbox)


def _error(event: Error) -> Exception:
    if event.code in ("invalid", "too_large"):
        return InvalidInputError(event.message)
    if event.code == "unknown_target":
        return SandboxClosedError(event.message)
    return ProtocolError(f"the agent refused ({event.code}): {event.message}")
