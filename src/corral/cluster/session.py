"""A session sandbox of a cluster pool: one sandbox, pinned to the node it started on.

Its calls go to that node's host. If the node (or its host) is lost, the sandbox is gone
with it: the call in flight and every later one raise :class:`NodeLostError` (a
SandboxCrashedError) naming the node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from corral.cluster.results import ClusterExecutionResult
from corral.errors import SandboxClosedError
from corral.models import BackgroundCommand, FileEntry, Language, OutputEvent

if TYPE_CHECKING:
    from corral.cluster.nodes import Host, Hosts


class AsyncClusterSandbox:
    """A session on one node: ``run``, ``commands.run``, ``files.*``, ``close``; see corral.AsyncSandbox."""

    def __init__(self, hosts: Hosts, options: dict[str, Any], node_id: str | None = None,
                 language: str | None = None):
        self._hosts = hosts
        self._node_id = node_id
        self._language = language  # None: taken from the node's pool; else a sandbox of its own with ``options``
        self._options = options
        self._host: Host | None = None
        self._session_id: str | None = None
        self._closed = False
        self.commands = ClusterCommands(self)
        self.files = ClusterFiles(self)

    @property
    def node_id(self) -> str | None:
        """The Ray node the sandbox lives on (known once started)."""
        return self._host.node_id if self._host else None

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    @property
    def host(self) -> Host | None:
        """The host of the node the sandbox lives on (None before start)."""
        return self._host

    @property
    def hosts(self) -> Hosts:
        """The cluster's hosts this sandbox's calls go through."""
        return self._hosts

    async def start(self) -> AsyncClusterSandbox:
        """Open the sandbox on its node (the least loaded one unless one was named)."""
        if self._closed or self._host is not None:
            raise SandboxClosedError("this sandbox was already started or closed")
        host = self._hosts.for_session(self._node_id)
        host.sessions += 1
        try:
            self._session_id = await self._hosts.call(host, host.actor.open_session.remote(self._options, self._language),
                                                      "opening a session")
        except BaseException:
            host.sessions -= 1
            raise
        self._host = host
        return self

    async def __aenter__(self) -> AsyncClusterSandbox:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
                  env: dict[str, str] | None = None, cwd: str | None = None) -> ClusterExecutionResult:
        """A block in the session interpreter (state is kept between calls)."""
        options = {"language": language, "timeout": timeout, "env": env, "cwd": cwd}
        host = self._ready_host()
        return await self._hosts.call(host, host.actor.session_run.remote(self._session_id, code, options),
                                      f"a run in session {self._session_id}")

    async def stream(self, code: str, *, language: Language | None = None, timeout: float | None = None,
                     env: dict[str, str] | None = None,
                     cwd: str | None = None) -> AsyncIterator[OutputEvent | ClusterExecutionResult]:
        """The same block as :meth:`run`, streamed from its node: OutputEvents as they come, then the result."""
        options = {"language": language, "timeout": timeout, "env": env, "cwd": cwd}
        host = self._ready_host()
        generator = host.actor.session_stream.remote(self._session_id, code, options)
        async for item in self._hosts.stream(host, generator, f"a run in session {self._session_id}"):
            yield item

    async def close(self) -> None:
        """Close the sandbox (idempotent; nothing to do if its node is gone)."""
        if self._closed:
            return
        self._closed = True
        host = self._host
        if host is None:
            return
        host.sessions -= 1
        if host.lost is None:
            await self._hosts.call(host, host.actor.close_session.remote(self._session_id), "closing a session")

    def ready_host(self) -> tuple[Host, str]:
        """The started sandbox's host and session id (SandboxClosedError before start or after close)."""
        return self._ready_host(), self._session_id

    def _ready_host(self) -> Host:
        if self._host is None or self._closed:
            raise SandboxClosedError("the sandbox is not started or was closed")
        return self._host

    async def _command(self, cmd: str, options: dict[str, Any]) -> ClusterExecutionResult | BackgroundCommand:
        host = self._ready_host()
        return await self._hosts.call(host, host.actor.session_command.remote(self._session_id, cmd, options),
                                      f"a command in session {self._session_id}")

    async def _file(self, operation: str, path: str, options: dict[str, Any]) -> Any:
        host = self._ready_host()
        return await self._hosts.call(host, host.actor.session_file.remote(self._session_id, operation, path,
                                                                           options),
                                      f"files.{operation} in session {self._session_id}")


class ClusterCommands:
    """Shell commands in a cluster session. See corral.AsyncCommands."""

    def __init__(self, sandbox: AsyncClusterSandbox):
        self._sandbox = sandbox

    async def run(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
                  stdin: bytes | str | bool | None = None, timeout: float | None = None,
                  background: bool = False) -> ClusterExecutionResult | BackgroundCommand:
        """``bash -c cmd`` in the sandbox (``stdin``: data, or with ``background`` True for a pipe)."""
        options = {"cwd": cwd, "env": env, "stdin": stdin, "timeout": timeout, "background": background}
        return await self._sandbox._command(cmd, options)


class ClusterFiles:
    """Files in a cluster session. See corral.AsyncFiles."""

    def __init__(self, sandbox: AsyncClusterSandbox):
        self._sandbox = sandbox

    async def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> int:
        """Create or replace ``path``; the bytes written."""
        return await self._sandbox._file("write", path, {"data": data, "mode": mode})

    async def read(self, path: str) -> bytes:
        """The whole contents of a regular file."""
        return await self._sandbox._file("read", path, {})

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file decoded as text."""
        return (await self.read(path)).decode(encoding)

    async def list(self, path: str = ".") -> list[FileEntry]:
        """Entries of a directory."""
        return await self._sandbox._file("list", path, {})

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file or directory."""
        await self._sandbox._file("remove", path, {"recursive": recursive})
