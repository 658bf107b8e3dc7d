"""``AsyncSandbox``: a sandbox you keep, with interpreter state, files and commands.

Implemented once, async; :class:`corral.Sandbox` mirrors it synchronously.
``run`` keeps interpreter state between calls (Python and JavaScript),
``commands.run`` starts a fresh shell command, ``files`` moves files in and
out through the agent.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from corral.agent_errors import agent_error
from corral.errors import (
    FileOperationError,
    InvalidInputError,
    PackageInstallError,
    ProtocolError,
    SandboxClosedError,
    SandboxCrashedError,
)
from corral.network import EgressDecision, ExposedPort, Network, PortMapping
from corral.output import OutputCallback, consume
from corral.packages import check_index, check_packages, index_hosts, install_command
from corral.services import SandboxServices
from corral.terminal import AsyncTerminal
from corral.execution import HostDeadlineExceeded, RunOptions, check_run, execute
from corral.channel import Channel
from corral.lease import Lease, LeaseSource, cold_start, discard, pause_memory, resume_start
from corral.commands import AsyncCommands
from corral.file_watch import AsyncFileWatch
from corral.models import (
    ExecutionResult,
    FileEntry,
    FileInfo,
    Language,
    Limits,
    OutputEvent,
    SandboxSpec,
    validated,
)
from corral.protocol import (
    Ack,
    DirListing,
    Error,
    FileData,
    FileListRequest,
    FileMkdirRequest,
    FileRenameRequest,
    FileStat,
    FileStatRequest,
    FileReadRequest,
    FileRemoveRequest,
    FileWriteRequest,
    wire,
)


class State(enum.Enum):
    """Lifecycle of a sandbox."""

    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    CLOSED = "closed"


_TRANSITIONS = {
    State.NEW: {State.STARTING, State.CLOSED},
    State.STARTING: {State.READY, State.CLOSED},
    State.READY: {State.CLOSED},
    State.CLOSED: set(),
}


def make_spec(language: str, isolation: str, env: dict | None, **limits: Any) -> SandboxSpec:
    """Validate user-facing options into a SandboxSpec (InvalidInputError on bad input)."""
    given = {name: value for name, value in limits.items() if value is not None}
    return validated(SandboxSpec, language=language, isolation=isolation, limits=validated(Limits, **given), env=env)


class AsyncSandbox:
    """A sandbox that lives until closed; ``async with`` starts and closes it."""

    def __init__(
        self,
        language: Language = "python",
        *,
        isolation: str = "auto",
        timeout: float | None = None,
        memory_mb: int | None = None,
        pids: int | None = None,
        cpus: float | None = None,
        disk_mb: int | None = None,
        stdout_limit: int | None = None,
        stderr_limit: int | None = None,
        env: dict[str, str] | None = None,
        network: Network | None = None,
        expose: list[PortMapping | int] | None = None,
        packages: list[str] | None = None,
        index_url: str | None = None,
        pool: LeaseSource | None = None,
    ):
        self.spec = pool.spec if pool is not None else make_spec(
            language, isolation, env, timeout=timeout, memory_mb=memory_mb, pids=pids, cpus=cpus,
            disk_mb=disk_mb, stdout_limit=stdout_limit, stderr_limit=stderr_limit,
        )
        self.network = _check_network(network)
        self._expose = _check_expose(expose)
        self._packages = check_packages(packages, self.spec.language) if packages is not None else None
        self._index_url = check_index(index_url, self.spec.language) if packages is not None else index_url
        #: Ports of the sandbox reachable from the host (known once started).
        self.exposed_ports: list[ExposedPort] = []
        self._services: SandboxServices | None = None
        self._pool = pool
        self._lease: Lease | None = None
        self._state = State.NEW
        self._session_lock = asyncio.Lock()
        self._startup_pending = True
        # a session block abandoned mid-run (cancelled) lost the interpreter's state; the
        # agent reported that on the abandoned result, so the next block reports it again
        self._unreported_reset = False
        self.files = AsyncFiles(self)
        self.commands = AsyncCommands(self)

    @property
    def language(self) -> Language:
        """Default language of ``run``."""
        return self.spec.language

    @property
    def isolation(self) -> str | None:
        """The isolation level in use (known once started)."""
        return self._lease.isolation if self._lease else None

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._state is State.CLOSED

    def _move(self, new: State) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise SandboxClosedError(f"cannot go from {self._state.value} to {new.value}")
        self._state = new

    async def start(self, *, memory_snapshot: Path | None = None) -> AsyncSandbox:
        """Start (or take from the pool) the sandbox. Called by ``async with``.

        ``memory_snapshot``: continue the sandbox :meth:`pause_memory` saved there instead of
        starting a fresh one (isolation levels that capture memory: ``microvm``).
        """
        self._move(State.STARTING)
        try:
            if memory_snapshot is not None:
                self._lease = await resume_start(self.spec, memory_snapshot)
            else:
                self._lease = await (self._pool.lease() if self._pool is not None else cold_start(self.spec))
        except BaseException:
            self._state = State.CLOSED
            raise
        try:
            self._services = self._lease.services = SandboxServices(self._lease.channel, self.network)
            self.exposed_ports = await self._services.start(self._expose)
            self._move(State.READY)
            if self._packages:
                await self.install(self._packages, index_url=self._index_url)
        except BaseException:
            await self.close()
            raise
        return self

    def network_log(self) -> list[EgressDecision]:
        """Every connection the egress proxy allowed or refused for this sandbox, oldest first."""
        return self._services.decisions if self._services else []

    def console_log(self) -> str:
        """What the sandbox printed outside the protocol: a microVM's serial console (kernel, init),
        the process sandbox's stderr. Available while the sandbox runs."""
        return self._ready_lease().instance.console_log()

    @property
    def channel(self) -> Channel:
        """The channel to the started sandbox's agent, for what is built on it (commands, terminals,
        file watches, health checks); SandboxClosedError unless the sandbox runs."""
        return self._ready_lease().channel

    async def install(self, packages: list[str], *, language: Language | None = None, index_url: str | None = None,
                      timeout: float = 300.0, on_stdout: OutputCallback | None = None,
                      on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Install pinned packages (pip for python, npm for javascript) into the sandbox's home.

        Only the package index is reachable during the install, whatever the
        network policy. Raises PackageInstallError if the installer fails.
        """
        self._ready_lease()
        language = language or self.spec.language
        specs = check_packages(packages, language)
        url = check_index(index_url, language)
        services = self._services
        async with services.temporary_egress(index_hosts(url)) as env:
            result = await self.commands.run(
                install_command(specs, language, url), env=env, cwd=wire.SANDBOX_HOME, timeout=timeout,
                on_stdout=on_stdout, on_stderr=on_stderr,
            )
        if not result.ok:
            raise PackageInstallError(specs, result)
        return result

    async def kill(self) -> None:
        """Stop the sandbox; teardown finishes in the background. Idempotent."""
        await self.close()

    async def close(self) -> None:
        """The same as :meth:`kill` (a local sandbox cannot outlive its object); ``async with`` calls it."""
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSED
        if self._lease is not None:
            if self._pool is not None:
                self._pool.retire(self._lease)
            else:
                discard(self._lease)

    async def pause_memory(self, directory: Path) -> None:
        """Save the whole sandbox, memory included, into ``directory`` and close it.

        Its interpreter state, files and processes continue after ``start(memory_snapshot=directory)``
        (on a sandbox object of the same spec). Only on levels that capture memory (``microvm``);
        elsewhere InvalidInputError and the sandbox keeps running. Call it with no operation running.
        """
        lease = self._ready_lease()
        await pause_memory(lease, directory)
        self._state = State.CLOSED
        discard(lease)  # everything is stopped already; this releases the rest

    def detach(self) -> Lease:
        """Close this sandbox object but hand its lease to the caller (a pool recycling it)."""
        lease = self._ready_lease()
        self._state = State.CLOSED
        return lease

    async def __aenter__(self) -> AsyncSandbox:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _ready_lease(self) -> Lease:
        if self._state is State.NEW:
            raise SandboxClosedError("the sandbox is not started: use 'async with' or await start()")
        if self._state is not State.READY or self._lease is None:
            raise SandboxClosedError("the sandbox is closed")
        return self._lease

    # --- running code --------------------------------------------------------------

    def run_options(self, code: str, *, language: str | None = None, session: bool = False,
                    timeout: float | None = None, env: dict[str, str] | None = None, cwd: str | None = None,
                    stdin: bytes | str | None = None) -> RunOptions:
        """Check one run's input and bind it to this sandbox's limits; what :meth:`events` and
        :meth:`execute` take (pools, batches and the hosted service build their runs with it).

        The sandbox's one check of a run's input (``run``, ``stream`` and ``commands`` go through it
        once; :meth:`events` takes what it returns as it is): InvalidInputError on bad input, before
        anything is sent. ``session``: in the session interpreter (Python, JavaScript), else a fresh
        process; ``timeout`` None: the sandbox's.
        """
        language = language or self.spec.language
        if language not in (*wire.LANGUAGES, "cpp"):
            raise InvalidInputError(f"unknown language {language!r}; choose one of {', '.join(wire.LANGUAGES)}, cpp")
        timeout = self.spec.limits.timeout if timeout is None else timeout
        if isinstance(stdin, str):
            stdin = stdin.encode()
        check_run(code, timeout, stdin, env)
        if cwd is not None and wire.path_problem(cwd):
            raise InvalidInputError(f"cwd: {wire.path_problem(cwd)}")
        return RunOptions(
            language=language, code=code, session=session and language not in ("shell", "cpp"), timeout=float(timeout),
            env=dict(env or {}), cwd=cwd, stdin=stdin, stdout_limit=self.spec.limits.stdout_limit,
            stderr_limit=self.spec.limits.stderr_limit,
        )

    def run_env(self, env: dict[str, str]) -> dict[str, str]:
        """A run's env: with network, the proxy settings underneath the sandbox's and the run's own."""
        proxy = self._services.run_env() if self._services is not None else {}
        return {**proxy, **self.spec.env_dict, **env} if proxy else env

    async def events(self, options: RunOptions) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """Run ``options`` (from :meth:`run_options`, not checked again); yield OutputEvents as they
        come, then the ExecutionResult. Closing the iterator early cancels the run."""
        lease = self._ready_lease()
        options = dataclasses.replace(options, env=self.run_env(options.env))
        startup = self._startup_pending
        self._startup_pending = False
        lock = self._session_lock if options.session else None
        if lock is not None:
            await lock.acquire()
        finished = False
        try:
            async for item in execute(
                lease.channel, options, isolation=lease.isolation, warm=lease.warm,
                setup_ms=lease.setup_ms if startup else 0.0, boot_ms=lease.boot_ms if startup else 0.0,
            ):
                if isinstance(item, ExecutionResult) and options.session:
                    finished = True
                    if self._unreported_reset and not item.session_reset:
                        item = item.model_copy(update={"session_reset": True})
                    self._unreported_reset = False
                yield item
        except HostDeadlineExceeded as exc:
            # the agent failed to enforce the timeout: the sandbox cannot be trusted any more
            await self.close()
            raise SandboxCrashedError(f"{exc}; the sandbox was killed") from exc
        finally:
            if options.session and not finished:
                self._unreported_reset = True
            if lock is not None:
                lock.release()

    def stream(self, code: str, *, language: Language | None = None, timeout: float | None = None,
               env: dict[str, str] | None = None, cwd: str | None = None) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session; yield OutputEvents as they come, then the ExecutionResult."""
        return self.events(self.run_options(code, language=language, session=True, timeout=timeout, env=env, cwd=cwd))

    async def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
                  env: dict[str, str] | None = None, cwd: str | None = None,
                  on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``code`` in the session interpreter (state is kept between calls)."""
        options = self.run_options(code, language=language, session=True, timeout=timeout, env=env, cwd=cwd)
        return await self.execute(options, on_stdout=on_stdout, on_stderr=on_stderr)

    async def execute(self, options: RunOptions, *, on_stdout: OutputCallback | None = None,
                      on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``options`` (from :meth:`run_options`) to its end: :meth:`events` with the output
        handed to the callbacks (called on the loop; a coroutine they return is awaited)."""
        return await consume(self.events(options), on_stdout, on_stderr)

    async def terminal(self, *, cols: int = 80, rows: int = 24, command: str | None = None,
                       env: dict[str, str] | None = None, cwd: str | None = None) -> AsyncTerminal:
        """A program on a pseudo-terminal (``command`` None: an interactive bash); use it with ``async with``."""
        return await AsyncTerminal.open(self.channel, cols, rows, command, self.run_env(dict(env or {})), cwd)

    # --- files ---------------------------------------------------------------------

    async def _file_call(self, build: Callable[[int], Any]) -> Any:
        event = await self.channel.call(build)
        if isinstance(event, Error):
            raise agent_error(event, "file")
        return event


class AsyncFiles:
    """Files inside the sandbox; relative paths start at the sandbox's home."""

    def __init__(self, sandbox: AsyncSandbox):
        self._sandbox = sandbox

    async def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> int:
        """Create or replace ``path`` (parents are created); returns the bytes written."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if len(payload) > wire.MAX_FILE_BYTES:
            raise InvalidInputError(f"file of {len(payload)} bytes exceeds {wire.MAX_FILE_BYTES}")
        _check_path(path)
        encoded = base64.b64encode(payload).decode()
        event = await self._sandbox._file_call(
            lambda request_id: FileWriteRequest(id=request_id, path=path, data_b64=encoded, mode=mode)
        )
        return _expect(event, Ack).size or 0

    async def read(self, path: str) -> bytes:
        """The whole contents of a regular file."""
        _check_path(path)
        event = await self._sandbox._file_call(lambda request_id: FileReadRequest(id=request_id, path=path))
        return base64.b64decode(_expect(event, FileData).data_b64)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file decoded as text."""
        return (await self.read(path)).decode(encoding)

    async def list(self, path: str = ".") -> list[FileEntry]:
        """Entries of a directory (symlinks are not followed)."""
        _check_path(path)
        event = await self._sandbox._file_call(lambda request_id: FileListRequest(id=request_id, path=path))
        return [FileEntry(**entry.model_dump()) for entry in _expect(event, DirListing).entries]

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, an empty directory, or a whole tree with ``recursive=True``."""
        _check_path(path)
        await self._sandbox._file_call(
            lambda request_id: FileRemoveRequest(id=request_id, path=path, recursive=recursive)
        )

    async def stat(self, path: str) -> FileInfo:
        """What ``path`` is: kind, size, mode, mtime, owner, and a symlink's target (not followed).

        FileOperationError with code ``not_found`` if nothing is there.
        """
        _check_path(path)
        event = await self._sandbox._file_call(lambda request_id: FileStatRequest(id=request_id, path=path))
        return FileInfo(**_expect(event, FileStat).entry.model_dump())

    async def exists(self, path: str) -> bool:
        """True if something (a file, a directory, a symlink, even a dangling one) is at ``path``."""
        try:
            await self.stat(path)
        except FileOperationError as exc:
            if exc.missing:
                return False
            raise
        return True

    async def make_dir(self, path: str, *, parents: bool = False) -> FileInfo:
        """Create a directory (``parents``: with its missing parents); FileOperationError ``exists`` if taken."""
        _check_path(path)
        event = await self._sandbox._file_call(
            lambda request_id: FileMkdirRequest(id=request_id, path=path, parents=parents)
        )
        return FileInfo(**_expect(event, FileStat).entry.model_dump())

    async def rename(self, source: str, destination: str) -> FileInfo:
        """Move ``source`` to ``destination`` (a file there is replaced); returns what is at ``destination``."""
        _check_path(source)
        _check_path(destination)
        event = await self._sandbox._file_call(
            lambda request_id: FileRenameRequest(id=request_id, source=source, destination=destination)
        )
        return FileInfo(**_expect(event, FileStat).entry.model_dump())

    async def watch(self, path: str = ".", *, recursive: bool = False) -> AsyncFileWatch:
        """Watch a directory: iterate the returned watch for FileEvents until it is closed.

        Events are queued on the host up to 10,000 (then one ``overflow`` event stands for the lost
        ones); the watch is in place when this returns.
        """
        _check_path(path)
        return await AsyncFileWatch.start(self._sandbox.channel, path, recursive)


def _check_network(network: object) -> Network:
    if network is None:
        return Network.none()
    if not isinstance(network, Network):
        raise InvalidInputError("network must be corral.Network.none(), .allow([...]) or .full()")
    return network


def _check_expose(expose: object) -> list[PortMapping]:
    mappings = []
    for item in expose or ():
        if isinstance(item, PortMapping):
            mappings.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            mappings.append(validated(PortMapping, internal=item))
        else:
            raise InvalidInputError(f"expose takes PortMapping objects or port numbers, got {item!r}")
    externals = [m.external for m in mappings if m.external is not None]
    if len(externals) != len(set(externals)):
        raise InvalidInputError("two mappings ask for the same external port")
    return mappings


def _check_path(path: object) -> None:
    problem = wire.path_problem(path)
    if problem:
        raise InvalidInputError(problem)


def _expect(event: Any, kind: type) -> Any:
    if not isinstance(event, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(event).__name__}")
    return event
