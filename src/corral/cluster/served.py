"""Sandboxes of ``corral serve --ray``: the service's sandboxes, started on cluster nodes.

:class:`ClusterSandboxes` is the service's sandbox factory in cluster mode: each new
sandbox is a :class:`ServedSandbox`, a sandbox of its own (the template's language, env
and limits) on the least loaded node's host, and its node is recorded in the
``cluster_placements`` table. A ServedSandbox answers what the service and its routes
ask of a sandbox (runs, commands, files, close); a run's output is streamed from its node
(a Ray streaming call), a command's comes in one piece when it ends. Terminals run on
the node too (:class:`RemoteTerminal`). Not routed: memory snapshots (refused with a clear
error: a microVM sandbox cannot be paused in cluster mode); file snapshots go through the
sandbox's files, so pause and resume work across nodes without shared storage.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray

from corral.cluster.nodes import Hosts
from corral.cluster.session import AsyncClusterSandbox
from corral.errors import InvalidInputError
from corral.models import BackgroundCommand, ExecutionResult, Language, OutputEvent
from corral.output import OutputCallback, consume
from corral.sandbox import AsyncSandbox
from corral.hosted.database import Database
from corral.hosted.terminal import TerminalExit


class ClusterSandboxes:
    """Start the service's sandboxes on the cluster's hosts and record where each one lives."""

    def __init__(self, address: str, isolation: str):
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        # hosts with an empty pool: every served sandbox is one of its own (its template's language, env, limits)
        self.hosts = Hosts(1, (0, "python", isolation, {}))

    async def start(self) -> None:
        """Start a host on every node with the resource (at least one must be ready)."""
        await self.hosts.start()
        await self.hosts.wait_for(1, 120.0)

    def new(self, language: Language, **options: Any) -> ServedSandbox:
        """A sandbox to be started on a node (``options`` are AsyncSandbox's)."""
        return ServedSandbox(self.hosts, language, options)

    def placed(self, db: Database, sandbox_id: str, sandbox: ServedSandbox) -> None:
        """Record the node ``sandbox_id`` runs on."""
        host = sandbox.host
        with db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO cluster_placements (sandbox_id, node_id, hostname, placed_at)"
                         " VALUES (?, ?, ?, ?)", (sandbox_id, host.node_id, host.facts.get("hostname", ""),
                                                  time.time()))

    async def close(self) -> None:
        """Close every host."""
        await self.hosts.close()


def placement(db: Database, sandbox_id: str) -> dict[str, Any] | None:
    """Where ``sandbox_id`` was placed (``node_id``, ``hostname``, ``placed_at``), or None."""
    rows = db.query("SELECT * FROM cluster_placements WHERE sandbox_id = ?", (sandbox_id,))
    return dict(rows[0]) if rows else None


class ServedSandbox:
    """A served sandbox living on a cluster node, with the parts of AsyncSandbox the service uses."""

    def __init__(self, hosts: Hosts, language: Language, options: dict[str, Any]):
        # a never-started local twin validates input exactly as a local sandbox would (InvalidInputError)
        self._local = AsyncSandbox(language, **options)
        self._remote = AsyncClusterSandbox(hosts, options, language=language)
        self.spec = self._local.spec
        self.commands = _Commands(self)
        self.files = self._remote.files

    @property
    def host(self):
        """The node's host (once started)."""
        return self._remote.host

    @property
    def isolation(self) -> str | None:
        """The node's isolation level (once started)."""
        return self.host.facts.get("isolation") if self.host else None

    @property
    def closed(self) -> bool:
        """Closed, or gone with its node."""
        return self._remote.closed or (self.host is not None and self.host.lost is not None)

    async def start(self, *, memory_snapshot: Path | None = None) -> ServedSandbox:
        """Start it on the least loaded node (a memory snapshot cannot be continued on another node)."""
        if memory_snapshot is not None:
            raise InvalidInputError("memory snapshots are local files of one node: corral serve --ray cannot "
                                    "resume them (their files part resumes on any node)")
        await self._remote.start()
        return self

    async def pause_memory(self, directory: Path) -> None:
        """Refused: a memory snapshot would be written on the sandbox's node, not where the server keeps it."""
        raise InvalidInputError("corral serve --ray does not capture memory (the snapshot would stay on the "
                                f"sandbox's node {self.host.node_id if self.host else '?'}); its files are captured")

    def server_terminal(self) -> RemoteTerminal:
        """A terminal in this sandbox, opened on its node (corral.hosted.terminal.Terminal's interface)."""
        return RemoteTerminal(self._remote)

    def stream(self, code: str, **options: Any) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """A block in the session interpreter on the node: its output as it comes, then its result
        (input checked here, at the call, as a local sandbox does)."""
        self._local.run_options(code, session=True, **options)
        return _plain_stream(self._remote.stream(code, **options))

    async def run(self, code: str, *, on_stdout: OutputCallback | None = None,
                  on_stderr: OutputCallback | None = None, **options: Any) -> ExecutionResult:
        """A block in the session interpreter on the node; with callbacks, its output is streamed to them."""
        if on_stdout is None and on_stderr is None:
            return _plain(await self._remote.run(code, **options))
        return _plain(await consume(self._remote.stream(code, **options), on_stdout, on_stderr))

    async def close(self) -> None:
        """Close it on its node (nothing to do if the node is gone)."""
        await self._remote.close()


class RemoteTerminal:
    """A pseudo-terminal in a served sandbox, run by its node's host; the same calls as Terminal."""

    def __init__(self, sandbox: AsyncClusterSandbox):
        self._hosts = sandbox.hosts
        self._host, self._session_id = sandbox.ready_host()
        self._id = secrets.token_hex(8)

    async def output(self, cols: int, rows: int, command: str | None = None) -> AsyncIterator[str | TerminalExit]:
        """Open the terminal; yield its output text as it comes, then a TerminalExit."""
        generator = self._host.actor.terminal_output.remote(self._session_id, self._id, cols, rows, command)
        async for item in self._hosts.stream(self._host, generator, f"a terminal in session {self._session_id}"):
            yield item

    async def wait_open(self) -> None:
        """Return once the terminal is open on the node."""
        await self._hosts.call(self._host, self._host.actor.terminal_wait_open.remote(self._id), "a terminal")

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the terminal."""
        await self._hosts.call(self._host, self._host.actor.terminal_write.remote(self._id, data), "a terminal")

    async def resize(self, cols: int, rows: int) -> None:
        """Set the terminal's window size."""
        await self._hosts.call(self._host, self._host.actor.terminal_resize.remote(self._id, cols, rows),
                               "a terminal")


class _Commands:
    def __init__(self, sandbox: ServedSandbox):
        self._sandbox = sandbox

    async def run(self, cmd: str, *, on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
                  **options: Any) -> ExecutionResult | BackgroundCommand:
        result = await self._sandbox._remote.commands.run(cmd, **options)
        return result if isinstance(result, BackgroundCommand) else await _delivered(result, on_stdout, on_stderr)

    async def start(self, cmd: str, **options: Any) -> BackgroundCommand:
        return await self._sandbox._remote.commands.run(cmd, background=True, **options)

    def stream(self, cmd: str, **options: Any) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """The command's output (in one piece, when it ends: a node answers commands whole), then its result."""
        self._sandbox._local.run_options(cmd, language="shell", **options)
        return self._streamed(cmd, options)

    async def _streamed(self, cmd: str, options: dict[str, Any]) -> AsyncIterator[OutputEvent | ExecutionResult]:
        result = _plain(await self._sandbox._remote.commands.run(cmd, **options))
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text:
                yield OutputEvent(stream=stream, data=text)
        yield result


async def _delivered(result: ExecutionResult, on_stdout: OutputCallback | None,
                     on_stderr: OutputCallback | None) -> ExecutionResult:
    """Give the callbacks a command's output (once, at its end), then return the plain ExecutionResult."""
    for callback, text in ((on_stdout, result.stdout), (on_stderr, result.stderr)):
        if callback is not None and text:
            outcome = callback(text)
            if hasattr(outcome, "__await__"):
                await outcome
    return _plain(result)


async def _plain_stream(
        events: AsyncIterator[OutputEvent | ExecutionResult]) -> AsyncIterator[OutputEvent | ExecutionResult]:
    try:
        async for item in events:
            yield _plain(item) if isinstance(item, ExecutionResult) else item
    finally:
        await events.aclose()


def _plain(result: ExecutionResult) -> ExecutionResult:
    """The ExecutionResult without ``node_id`` (the HTTP API's model has no such field)."""
    return ExecutionResult.model_validate(result.model_dump(exclude={"node_id"}))

