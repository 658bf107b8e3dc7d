"""The sandbox host: one long-lived Ray actor per node, holding a local :class:`corral.AsyncPool`.

It is an async actor (its methods are coroutines on one event loop), so one actor serves
every run placed on its node at once; the placement side bounds how many (``per_node``).
At start (:meth:`SandboxHost.ready`) it resolves the isolation level as ``corral doctor``
does and refuses, with the probe's reason, on a node that cannot sandbox. Sessions are
sandboxes taken from the pool and kept here under an id until closed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from typing import Any

import ray

from corral.backends import registry
from corral.batch.execute import run_item
from corral.batch.items import BatchItem
from corral.errors import SandboxClosedError
from corral.models import BackgroundCommand, ExecutionResult, Language
from corral.pool import AsyncPool
from corral.sandbox import AsyncSandbox
from corral.hosted.terminal import Terminal
from corral.cluster.results import ClusterBatchResult, ClusterExecutionResult, placed_item, placed_run


class SandboxHost:
    """A node's sandboxes: a warm pool for runs and batch items, and the sessions opened on it."""

    def __init__(self, per_node: int, language: Language, isolation: str, config: dict[str, Any]):
        self.node_id = ray.get_runtime_context().get_node_id()
        self._per_node = per_node
        self._language = language
        self._isolation = isolation
        self._config = config
        self._pool: AsyncPool | None = None
        self._sessions: dict[str, AsyncSandbox] = {}
        self._terminals: dict[str, Terminal] = {}
        self._terminal_opened: dict[str, asyncio.Event] = {}

    async def ready(self) -> dict[str, Any]:
        """Check that this node can sandbox (IsolationUnavailableError if not), fill the pool; this node's facts."""
        backend = registry.resolve(self._isolation)  # what `corral doctor` reports for this level
        self._isolation = backend.name
        self._pool = AsyncPool(self._per_node, language=self._language, isolation=backend.name, **self._config)
        await self._pool.start(wait=True)
        return {"node_id": self.node_id, "hostname": socket.gethostname(), "pid": os.getpid(),
                "isolation": backend.name}

    async def run(self, code: str, options: dict[str, Any]) -> ClusterExecutionResult:
        """``AsyncPool.run`` on this node."""
        return placed_run(await self._require_pool().run(code, **options), self.node_id)

    async def run_item(self, item: BatchItem, index: int, attempts: int) -> ClusterBatchResult:
        """One batch item on this node's pool (never raises: failures are data in the result)."""
        return placed_item(await run_item(self._require_pool(), item, index), self.node_id, attempts)

    def statistics(self) -> dict[str, int]:
        """The local pool's statistics and the open sessions."""
        return {**self._require_pool().statistics(), "sessions": len(self._sessions)}

    # --- sessions ------------------------------------------------------------------

    async def open_session(self, options: dict[str, Any], language: Language | None = None) -> str:
        """Start a session sandbox, from the pool or (with ``language``) one of its own with ``options``; its id."""
        if language is None:
            sandbox = AsyncSandbox(pool=self._require_pool(), **options)
        else:
            sandbox = AsyncSandbox(language, **{"isolation": self._isolation, **options})
        await sandbox.start()
        session_id = secrets.token_hex(8)
        self._sessions[session_id] = sandbox
        return session_id

    async def session_run(self, session_id: str, code: str, options: dict[str, Any]) -> ClusterExecutionResult:
        """A block in the session's interpreter."""
        return placed_run(await self._session(session_id).run(code, **options), self.node_id)

    async def session_stream(self, session_id: str, code: str, options: dict[str, Any]):
        """A block in the session's interpreter as a stream: OutputEvents as they come, then the result."""
        async for item in self._session(session_id).stream(code, **options):
            yield placed_run(item, self.node_id) if isinstance(item, ExecutionResult) else item

    async def session_command(self, session_id: str, cmd: str,
                              options: dict[str, Any]) -> ClusterExecutionResult | BackgroundCommand:
        """``commands.run`` in the session's sandbox."""
        result = await self._session(session_id).commands.run(cmd, **options)
        return placed_run(result, self.node_id) if isinstance(result, ExecutionResult) else result

    async def session_file(self, session_id: str, operation: str, path: str, options: dict[str, Any]) -> Any:
        """One of ``files.write/read/list/remove`` in the session's sandbox."""
        files = self._session(session_id).files
        method = {"write": files.write, "read": files.read, "list": files.list, "remove": files.remove}[operation]
        return await method(path, **options)

    async def terminal_output(self, session_id: str, terminal_id: str, cols: int, rows: int,
                              command: str | None):
        """Open a terminal in the session's sandbox; yield its output text, then a TerminalExit."""
        terminal = Terminal(self._session(session_id))
        self._terminals[terminal_id] = terminal
        self._terminal_opened.setdefault(terminal_id, asyncio.Event()).set()
        try:
            async for item in terminal.output(cols, rows, command):
                yield item
        finally:
            self._terminals.pop(terminal_id, None)
            self._terminal_opened.pop(terminal_id, None)

    async def terminal_wait_open(self, terminal_id: str) -> None:
        """Return once the terminal's open request was sent to the agent."""
        await self._terminal_opened.setdefault(terminal_id, asyncio.Event()).wait()
        terminal = self._terminals.get(terminal_id)
        if terminal is not None:
            await terminal.wait_open()

    async def terminal_write(self, terminal_id: str, data: bytes) -> None:
        """Type ``data`` into an open terminal."""
        await self._terminal(terminal_id).write(data)

    async def terminal_resize(self, terminal_id: str, cols: int, rows: int) -> None:
        """Set an open terminal's window size."""
        await self._terminal(terminal_id).resize(cols, rows)

    def _terminal(self, terminal_id: str) -> Terminal:
        terminal = self._terminals.get(terminal_id)
        if terminal is None:
            raise SandboxClosedError(f"the terminal {terminal_id} is not open on node {self.node_id}")
        return terminal

    async def close_session(self, session_id: str) -> None:
        """Close a session (idempotent)."""
        sandbox = self._sessions.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def close(self) -> None:
        """Close every session and the pool."""
        for session_id in list(self._sessions):
            await self.close_session(session_id)
        if self._pool is not None:
            await self._pool.close()

    def _require_pool(self) -> AsyncPool:
        if self._pool is None:
            raise SandboxClosedError("this sandbox host has not started (call ready() first)")
        return self._pool

    def _session(self, session_id: str) -> AsyncSandbox:
        sandbox = self._sessions.get(session_id)
        if sandbox is None:
            raise SandboxClosedError(f"no open session {session_id} on node {self.node_id}")
        return sandbox
