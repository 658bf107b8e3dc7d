"""``AsyncHostedSandbox``: a sandbox with an id, on a corral server or in process.

Create, connect, list and resume are class methods; ``server=`` picks the
remote transport, its absence the local one. Every other call is the same in
both modes. :class:`corral.client.HostedSandbox` mirrors it synchronously.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator
from typing import Any

from corral.client.local import LocalTransport
from corral.client.remote import RemoteTransport
from corral.client.terminal import AsyncHostedTerminal, check_size
from corral.client.transport import ProgressCallback, Transport
from corral.commands import SIGNALS
from corral.contract.schemas import (
    DEFAULT_TTL_S,
    CommandRequest,
    CreateSandbox,
    LimitsRequest,
    LogEvent,
    ResumeSnapshot,
    RunRequest,
    SandboxInfo,
    SnapshotInfo,
    TemplateDefinition,
    TemplateInfo,
)
from corral.contract.states import SandboxState
from corral.errors import FileOperationError, InvalidInputError
from corral.models import (
    BackgroundCommand,
    ExecutionResult,
    FileEntry,
    FileInfo,
    Language,
    OutputEvent,
    ProcessInfo,
    validated,
)
from corral.output import OutputCallback, consume


def _transport(server: str | None, api_key: str | None, access_token: str | None = None) -> Transport:
    if server is None:
        if api_key is not None or access_token is not None:
            raise InvalidInputError("api_key and access_token are for a corral server: pass server= too")
        return LocalTransport()
    return RemoteTransport(server, access_token or api_key or os.environ.get("CORRAL_API_KEY"))


class AsyncHostedSandbox:
    """A hosted sandbox; get one from :meth:`create`, :meth:`connect` or :meth:`resume`."""

    def __init__(self, transport: Transport, info: SandboxInfo, access_token: str | None = None):
        self._transport = transport
        self.info = info
        #: Grants runs, commands and files of this sandbox only (None when connected without it).
        self.access_token = access_token
        self.files = AsyncHostedFiles(self)
        self.commands = AsyncHostedCommands(self)

    @property
    def id(self) -> str:
        """The sandbox's id."""
        return self.info.id

    @property
    def metadata(self) -> dict[str, str]:
        """The metadata given at creation."""
        return self.info.metadata

    # --- class methods ---------------------------------------------------------------

    @classmethod
    async def create(cls, template: str = "python", *, server: str | None = None, api_key: str | None = None,
                     ttl: float | None = None, metadata: dict[str, str] | None = None,
                     env: dict[str, str] | None = None, run_timeout: float | None = None,
                     memory_mb: int | None = None, pids: int | None = None, cpus: float | None = None,
                     disk_mb: int | None = None, timeout: float | None = None) -> AsyncHostedSandbox:
        """Start a sandbox from ``template`` that lives ``ttl`` seconds (default 300) unless extended.

        ``run_timeout`` is the default limit of one run or command (as ``timeout`` of a local
        ``Sandbox``); ``memory_mb``, ``pids``, ``cpus``, ``disk_mb`` are those of corral.Limits.
        ``timeout`` is the deprecated name of ``ttl``.
        """
        ttl = resolve_ttl(ttl, timeout, "create")
        given = {"timeout": run_timeout, "memory_mb": memory_mb, "pids": pids, "cpus": cpus, "disk_mb": disk_mb}
        request = validated(CreateSandbox, template=template, timeout=ttl, metadata=metadata or {}, env=env or {},
                            limits=validated(LimitsRequest, **{k: v for k, v in given.items() if v is not None}))
        transport = _transport(server, api_key)
        try:
            created = await transport.create(request)
        except BaseException:
            await transport.close()
            raise
        return cls(transport, SandboxInfo(**created.model_dump(exclude={"access_token"})), created.access_token)

    @classmethod
    async def connect(cls, sandbox_id: str, *, server: str | None = None, api_key: str | None = None,
                      access_token: str | None = None) -> AsyncHostedSandbox:
        """Attach to an existing sandbox (by its owner's key, or by its own access token)."""
        transport = _transport(server, api_key, access_token)
        try:
            info = await transport.get(sandbox_id)
        except BaseException:
            await transport.close()
            raise
        return cls(transport, info, access_token)

    @classmethod
    async def list(cls, *, server: str | None = None, api_key: str | None = None,
                   metadata: dict[str, str] | None = None, state: SandboxState | str | None = None) -> list[SandboxInfo]:
        """Sandboxes (of this key, or of local mode) whose metadata matches, newest first."""
        transport = _transport(server, api_key)
        try:
            return await transport.list(metadata or {}, SandboxState(state) if state is not None else None)
        finally:
            await transport.close()

    @classmethod
    async def resume(cls, snapshot_id: str, *, server: str | None = None, api_key: str | None = None,
                     ttl: float | None = None, metadata: dict[str, str] | None = None,
                     timeout: float | None = None) -> AsyncHostedSandbox:
        """A new running sandbox continuing the snapshot a pause left, living ``ttl`` seconds (default 300).

        ``timeout`` is the deprecated name of ``ttl``.
        """
        request = validated(ResumeSnapshot, timeout=resolve_ttl(ttl, timeout, "resume"), metadata=metadata)
        transport = _transport(server, api_key)
        try:
            created = await transport.resume(snapshot_id, request)
        except BaseException:
            await transport.close()
            raise
        return cls(transport, SandboxInfo(**created.model_dump(exclude={"access_token"})), created.access_token)

    @staticmethod
    async def build_template(definition: dict[str, Any] | TemplateDefinition, *, server: str | None = None,
                             api_key: str | None = None, on_progress: ProgressCallback | None = None) -> TemplateInfo:
        """Build a template (an identical definition is not built again); ``on_progress(step, total, message)``."""
        if not isinstance(definition, TemplateDefinition):
            definition = validated(TemplateDefinition, **definition)
        transport = _transport(server, api_key)
        try:
            return await transport.build_template(definition, on_progress or (lambda *_: None))
        finally:
            await transport.close()

    # --- lifecycle -------------------------------------------------------------------

    async def refresh(self) -> SandboxInfo:
        """Fetch the sandbox's current record into ``info``."""
        self.info = await self._transport.get(self.id)
        return self.info

    async def set_ttl(self, seconds: float) -> SandboxInfo:
        """Keep the sandbox alive ``seconds`` more, counted from now."""
        self.info = await self._transport.set_timeout(self.id, seconds)
        return self.info

    async def set_timeout(self, seconds: float) -> SandboxInfo:
        """Deprecated name of :meth:`set_ttl`."""
        deprecated("set_timeout() is deprecated: call set_ttl()")
        return await self.set_ttl(seconds)

    async def events(self) -> list[LogEvent]:
        """The sandbox's lifecycle events, oldest first."""
        return await self._transport.events(self.id)

    async def pause(self) -> SnapshotInfo:
        """Capture the sandbox into a snapshot and stop it; resume with ``resume(snapshot.id)``."""
        snapshot = await self._transport.pause(self.id)
        self.info = await self._transport.get(self.id)
        return snapshot

    async def kill(self) -> None:
        """Stop the sandbox (idempotent) and release this object's connections."""
        try:
            self.info = await self._transport.kill(self.id)
        finally:
            await self.disconnect()

    async def disconnect(self) -> None:
        """Release this object's connections; the sandbox itself keeps running (see kill)."""
        await self._transport.close()

    async def close(self) -> None:
        """Deprecated name of :meth:`disconnect` (a local sandbox's ``close`` kills it: call kill or disconnect)."""
        deprecated("close() of a hosted sandbox is deprecated: call disconnect() (it keeps running) or kill()")
        await self.disconnect()

    async def __aenter__(self) -> AsyncHostedSandbox:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.kill()

    # --- code ------------------------------------------------------------------------

    async def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
                  env: dict[str, str] | None = None, cwd: str | None = None,
                  on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``code`` in the session interpreter (state is kept between calls)."""
        request = validated(RunRequest, code=code, language=language, timeout=timeout, env=env or {}, cwd=cwd)
        if on_stdout is None and on_stderr is None:
            return await self._transport.execute(self.id, request)
        return await consume(self._transport.stream(self.id, request), on_stdout, on_stderr)

    async def terminal(self, *, cols: int = 80, rows: int = 24, command: str | None = None) -> AsyncHostedTerminal:
        """An interactive terminal (``command`` None: ``bash -i``); use it with ``async with``."""
        check_size(cols, rows)
        return await self._transport.open_terminal(self.id, cols, rows, command)

    def stream(self, code: str, *, language: Language | None = None, timeout: float | None = None,
               env: dict[str, str] | None = None, cwd: str | None = None) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session; yield OutputEvents as they come, then the ExecutionResult."""
        request = validated(RunRequest, code=code, language=language, timeout=timeout, env=env or {}, cwd=cwd)
        return self._transport.stream(self.id, request)


def resolve_ttl(ttl: float | None, timeout: float | None, call: str) -> float:
    """The time to live given as ``ttl`` or, deprecated, as ``timeout`` (DEFAULT_TTL_S if neither)."""
    if timeout is None:
        return DEFAULT_TTL_S if ttl is None else ttl
    if ttl is not None:
        raise InvalidInputError(f"{call}: ttl= and its deprecated name timeout= were both given")
    deprecated(f"{call}(timeout=...) is deprecated: the time to live is ttl= (a run's limit is run_timeout=)", 4)
    return timeout


def deprecated(message: str, stacklevel: int = 3) -> None:
    """Warn of a deprecated spelling (DeprecationWarning, pointing at the caller's line)."""
    warnings.warn(f"corral deprecation: {message}", DeprecationWarning, stacklevel=stacklevel)


class AsyncHostedCommands:
    """Shell commands in a hosted sandbox: each one a fresh process."""

    def __init__(self, sandbox: AsyncHostedSandbox):
        self._sandbox = sandbox

    async def run(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
                  stdin: str | None = None, timeout: float | None = None, background: bool = False,
                  on_stdout: OutputCallback | None = None,
                  on_stderr: OutputCallback | None = None) -> ExecutionResult | BackgroundCommand:
        """Run ``cmd`` with bash; its output and exit code (``background``: start it and return)."""
        if isinstance(stdin, bytes):
            stdin = stdin.decode()
        request = validated(CommandRequest, cmd=cmd, cwd=cwd, env=env or {}, stdin=stdin, timeout=timeout,
                            background=background)
        transport, sandbox_id = self._sandbox._transport, self._sandbox.id
        if background or (on_stdout is None and on_stderr is None):
            return await transport.execute(sandbox_id, request)
        return await consume(transport.stream(sandbox_id, request), on_stdout, on_stderr)

    async def start(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
                    stdin: bool = False, timeout: float | None = None) -> BackgroundCommand:
        """Start ``cmd`` in the background (``stdin``: with a pipe for :meth:`send_stdin`); its pid and log file."""
        request = validated(CommandRequest, cmd=cmd, cwd=cwd, env=env or {}, timeout=timeout, background=True,
                            stdin_pipe=stdin)
        return await self._sandbox._transport.execute(self._sandbox.id, request)

    async def list(self) -> list[ProcessInfo]:
        """The background commands still running."""
        return await self._sandbox._transport.list_processes(self._sandbox.id)

    async def kill(self, pid: int, signal: str | int = "SIGKILL") -> bool:
        """Signal background command ``pid`` (SIGKILL: with its descendants); False if it had ended."""
        name = signal if isinstance(signal, str) else {number: name for name, number in SIGNALS.items()}.get(signal)
        if name not in SIGNALS:
            raise InvalidInputError(f"signal must be one of {', '.join(SIGNALS)} (or their numbers)")
        return await self._sandbox._transport.signal_process(self._sandbox.id, _pid(pid), name)

    async def send_stdin(self, pid: int, data: bytes | str) -> None:
        """Write ``data`` to the stdin of background command ``pid`` (started with stdin)."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        await self._sandbox._transport.send_stdin(self._sandbox.id, _pid(pid), payload)

    async def close_stdin(self, pid: int) -> None:
        """Close the stdin of background command ``pid``."""
        await self._sandbox._transport.close_stdin(self._sandbox.id, _pid(pid))


def _pid(pid: object) -> int:
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        raise InvalidInputError(f"pid must be a positive integer, got {pid!r}")
    return pid


class AsyncHostedFiles:
    """Files inside a hosted sandbox; relative paths start at its home."""

    def __init__(self, sandbox: AsyncHostedSandbox):
        self._sandbox = sandbox

    async def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> int:
        """Create or replace ``path`` (parents are created); the bytes written."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        return await self._sandbox._transport.write_file(self._sandbox.id, path, payload, mode)

    async def read(self, path: str) -> bytes:
        """The whole contents of a regular file."""
        return await self._sandbox._transport.read_file(self._sandbox.id, path)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file decoded as text."""
        return (await self.read(path)).decode(encoding)

    async def list(self, path: str = ".") -> list[FileEntry]:
        """Entries of a directory (symlinks are not followed)."""
        return await self._sandbox._transport.list_files(self._sandbox.id, path)

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, an empty directory, or a tree with ``recursive=True``."""
        await self._sandbox._transport.remove_file(self._sandbox.id, path, recursive)

    async def stat(self, path: str) -> FileInfo:
        """What ``path`` is (a symlink is described, not followed)."""
        return await self._sandbox._transport.stat_file(self._sandbox.id, path)

    async def exists(self, path: str) -> bool:
        """True if something is at ``path``."""
        try:
            await self.stat(path)
        except FileOperationError as exc:
            if exc.missing:
                return False
            raise
        return True

    async def make_dir(self, path: str, *, parents: bool = False) -> FileInfo:
        """Create a directory (``parents``: with its missing parents)."""
        return await self._sandbox._transport.make_dir(self._sandbox.id, path, parents)

    async def rename(self, source: str, destination: str) -> FileInfo:
        """Move ``source`` to ``destination`` (a file there is replaced)."""
        return await self._sandbox._transport.rename_file(self._sandbox.id, source, destination)
