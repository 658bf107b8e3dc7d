"""The synchronous API: ``Sandbox``, ``Pool`` and ``run``, mirroring the async ones.

Same names, same arguments, same results as :mod:`corral.sandbox`,
:mod:`corral.pool` and :mod:`corral.oneshot`; each call runs on the shared
background loop of :mod:`corral.sync_bridge`. Output callbacks are called in
the caller's thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.batch.many import arun_many
from corral.batch.runner import Items
from corral.batch.verdicts import BatchResult
from corral.errors import ProtocolError
from corral.file_watch import AsyncFileWatch
from corral.models import ExecutionResult, FileEntry, FileEvent, FileInfo, Language, OutputEvent
from corral.network import EgressDecision, ExposedPort
from corral.oneshot import arun
from corral.pool import AsyncPool
from corral.sandbox import AsyncSandbox, OutputCallback
from corral.sync_bridge import bridge
from corral.sync_commands import Commands
from corral.terminal import AsyncTerminal

if TYPE_CHECKING:
    from corral.client.sync import HostedSandbox


def consume(items: Iterator[OutputEvent | ExecutionResult], on_stdout: OutputCallback | None,
            on_stderr: OutputCallback | None) -> ExecutionResult:
    """Call the callbacks for each output event of a stream, in this thread; return its result."""
    for item in items:
        if isinstance(item, ExecutionResult):
            return item
        callback = on_stdout if item.stream == "stdout" else on_stderr
        if callback is not None:
            callback(item.data)
    raise ProtocolError("the run ended without a result")


class Sandbox:
    """A sandbox that lives until closed; ``with`` starts and closes it. See AsyncSandbox."""

    def __init__(self, language: Language = "python", *, pool: Pool | None = None, **options: Any):
        self._async = bridge.call(_construct(language, pool._async if pool else None, options))
        self.files = Files(self._async)
        self.commands = Commands(self._async)

    # hosted sandboxes (corral.client): an id, pause/resume, on a corral server (server=URL) or in process.
    # corral.client (with httpx, ~90 ms) is imported when first used, not by every `import corral`.

    @staticmethod
    def create(template: str = "python", **options: Any) -> HostedSandbox:
        """Start a hosted sandbox (``server=``, ``api_key=``, ``timeout=``, ``metadata=``); see corral.client."""
        from corral.client.sync import HostedSandbox

        return HostedSandbox.create(template, **options)

    @staticmethod
    def connect(sandbox_id: str, **options: Any) -> HostedSandbox:
        """Attach to a hosted sandbox by id (``server=``, ``api_key=`` or ``access_token=``)."""
        from corral.client.sync import HostedSandbox

        return HostedSandbox.connect(sandbox_id, **options)

    @staticmethod
    def list(**options: Any) -> list:
        """Hosted sandboxes whose metadata matches (``server=``, ``api_key=``, ``metadata=``, ``state=``)."""
        from corral.client.sync import HostedSandbox

        return HostedSandbox.list(**options)

    @staticmethod
    def resume(snapshot_id: str, **options: Any) -> HostedSandbox:
        """A new hosted sandbox continuing a snapshot that ``pause()`` left."""
        from corral.client.sync import HostedSandbox

        return HostedSandbox.resume(snapshot_id, **options)

    @property
    def spec(self):
        """The validated configuration."""
        return self._async.spec

    @property
    def isolation(self) -> str | None:
        """The isolation level in use (known once started)."""
        return self._async.isolation

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._async.closed

    @property
    def exposed_ports(self) -> list[ExposedPort]:
        """Ports of the sandbox reachable from the host."""
        return self._async.exposed_ports

    def network_log(self) -> list[EgressDecision]:
        """Every connection the egress proxy allowed or refused, oldest first."""
        return self._async.network_log()

    def console_log(self) -> str:
        """A microVM's serial console, the process sandbox's stderr (while the sandbox runs)."""
        return self._async.console_log()

    def install(self, packages: list[str], **options: Any) -> ExecutionResult:
        """Install pinned packages into the sandbox (see AsyncSandbox.install)."""
        return bridge.call(self._async.install(packages, **options))

    def start(self, *, memory_snapshot: Path | None = None) -> Sandbox:
        """Start the sandbox (``with`` does it for you); ``memory_snapshot``: continue a paused one."""
        bridge.call(self._async.start(memory_snapshot=memory_snapshot))
        return self

    def pause_memory(self, directory: Path) -> None:
        """Save the whole sandbox, memory included, into ``directory`` and close it (``microvm``)."""
        bridge.call(self._async.pause_memory(directory))

    def close(self) -> None:
        """Kill the sandbox; teardown finishes in the background."""
        bridge.call(self._async.close())

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stream(self, code: str, **options: Any) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session; yield OutputEvents, then the ExecutionResult."""
        return bridge.iterate(self._async.stream(code, **options))

    def terminal(self, *, cols: int = 80, rows: int = 24, command: str | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> Terminal:
        """A program on a pseudo-terminal (``command`` None: an interactive bash); use it with ``with``."""
        return Terminal(bridge.call(self._async.terminal(cols=cols, rows=rows, command=command, env=env, cwd=cwd)))

    def run(self, code: str, *, on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
            **options: Any) -> ExecutionResult:
        """Run ``code`` in the session interpreter (state is kept between calls).

        Callbacks are called in this thread, as the output arrives.
        """
        if on_stdout is None and on_stderr is None:
            return bridge.call(self._async.run(code, **options))  # one round trip to the loop
        return consume(self.stream(code, **options), on_stdout, on_stderr)


async def _construct(language: str, pool: AsyncPool | None, options: dict[str, Any]) -> AsyncSandbox:
    # built on the bridge's loop so its asyncio objects belong there
    return AsyncSandbox(language, pool=pool, **options)


class Terminal:
    """A program on a pseudo-terminal in the sandbox. See AsyncTerminal."""

    def __init__(self, terminal: AsyncTerminal):
        self._async = terminal

    @property
    def pid(self) -> int | None:
        """The program's pid inside the sandbox."""
        return self._async.pid

    @property
    def exit_code(self) -> int | None:
        """The program's exit status once it ended, else None."""
        return self._async.exit_code

    @property
    def signal(self) -> int | None:
        """The signal that ended it, if any."""
        return self._async.signal

    @property
    def running(self) -> bool:
        """True until the program's exit was reported."""
        return self._async.running

    def write(self, data: str | bytes) -> None:
        """Type ``data``."""
        bridge.call(self._async.write(data))

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size."""
        bridge.call(self._async.resize(cols, rows))

    def read(self, timeout: float | None = None) -> str:
        """Output not read yet, waiting up to ``timeout`` s for some."""
        return bridge.call(self._async.read(timeout))

    def read_until(self, text: str, timeout: float | None = 30.0) -> str:
        """Output up to and including the first ``text``."""
        return bridge.call(self._async.read_until(text, timeout))

    def __iter__(self) -> Iterator[str]:
        return bridge.iterate(aiter(self._async))

    def kill(self) -> None:
        """Kill the program and everything it started."""
        bridge.call(self._async.kill())

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the program to end; its exit code."""
        return bridge.call(self._async.wait(timeout))

    def close(self) -> None:
        """Kill the program if it still runs."""
        bridge.call(self._async.close())

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Files:
    """Files inside the sandbox. See AsyncFiles."""

    def __init__(self, sandbox: AsyncSandbox):
        self._files = sandbox.files

    def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> int:
        """Create or replace ``path``; returns the bytes written."""
        return bridge.call(self._files.write(path, data, mode=mode))

    def read(self, path: str) -> bytes:
        """The whole contents of a regular file."""
        return bridge.call(self._files.read(path))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file decoded as text."""
        return bridge.call(self._files.read_text(path, encoding))

    def list(self, path: str = ".") -> list[FileEntry]:
        """Entries of a directory."""
        return bridge.call(self._files.list(path))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file or directory."""
        bridge.call(self._files.remove(path, recursive=recursive))

    def stat(self, path: str) -> FileInfo:
        """What ``path`` is (a symlink is described, not followed)."""
        return bridge.call(self._files.stat(path))

    def exists(self, path: str) -> bool:
        """True if something is at ``path``."""
        return bridge.call(self._files.exists(path))

    def make_dir(self, path: str, *, parents: bool = False) -> FileInfo:
        """Create a directory (``parents``: with its missing parents)."""
        return bridge.call(self._files.make_dir(path, parents=parents))

    def rename(self, source: str, destination: str) -> FileInfo:
        """Move ``source`` to ``destination``."""
        return bridge.call(self._files.rename(source, destination))

    def watch(self, path: str = ".", *, recursive: bool = False) -> FileWatch:
        """Watch a directory: iterate the returned watch for FileEvents until it is closed."""
        return FileWatch(bridge.call(self._files.watch(path, recursive=recursive)))


class FileWatch:
    """A directory watch: ``for event in watch`` until :meth:`close` (or ``with``). See AsyncFileWatch."""

    def __init__(self, watch: AsyncFileWatch):
        self._async = watch

    def __iter__(self) -> Iterator[FileEvent]:
        return bridge.iterate(aiter(self._async))

    def pending(self) -> list[FileEvent]:
        """The events that arrived and were not consumed yet (without waiting)."""
        return bridge.call(_pending(self._async))

    def close(self) -> None:
        """Stop watching."""
        bridge.call(self._async.close())

    def __enter__(self) -> FileWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _pending(watch: AsyncFileWatch) -> list[FileEvent]:
    return watch.pending()


class Pool:
    """Warm sandboxes for one configuration. See AsyncPool."""

    def __init__(self, size: int = 4, **config: Any):
        self._async = bridge.call(_construct_pool(size, config))

    def start(self, *, wait: bool = True) -> Pool:
        """Begin filling; with ``wait`` return once the pool is full."""
        bridge.call(self._async.start(wait=wait))
        return self

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str, *, on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
            **options: Any) -> ExecutionResult:
        """Run ``code`` once in a fresh process on a warm sandbox (callbacks run on corral's loop thread)."""
        return bridge.call(self._async.run(code, on_stdout=on_stdout, on_stderr=on_stderr, **options))

    def map(self, items: Items, *, concurrency: int | None = None, ordered: bool = False) -> Iterator[BatchResult]:
        """Run batch items on this pool; BatchResults as they complete (see AsyncPool.map)."""
        return bridge.iterate(self._async.map(items, concurrency=concurrency, ordered=ordered))

    def sandbox(self) -> Sandbox:
        """A session sandbox taken from this pool (use it with ``with``)."""
        return Sandbox(pool=self)

    def statistics(self) -> dict[str, int]:
        """Ready sandboxes, starts in flight, hits and misses."""
        return self._async.statistics()

    def close(self) -> None:
        """Tear every ready sandbox down."""
        bridge.call(self._async.close())


async def _construct_pool(size: int, config: dict[str, Any]) -> AsyncPool:
    return AsyncPool(size, **config)


def run(code: str, language: Language = "python", *, pool: Pool | None = None,
        on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
        **options: Any) -> ExecutionResult:
    """Run ``code`` once in a fresh sandbox (or on ``pool``/``pool_size=N``). See ``corral.arun``.

    Output callbacks, if given, are called on corral's background loop thread.
    """
    return bridge.call(arun(code, language, pool=pool._async if pool else None,
                            on_stdout=on_stdout, on_stderr=on_stderr, **options))


def run_many(items: Items, *, concurrency: int = 4, ordered: bool = False, isolation: str = "auto",
             timeout: float | None = None, memory_mb: int | None = None, pids: int | None = None,
             cpus: float | None = None, disk_mb: int | None = None,
             env: dict[str, str] | None = None) -> Iterator[BatchResult]:
    """Run batch items on pools of their own; BatchResults as they complete. See ``corral.arun_many``.

    The input iterator is read on corral's loop thread.
    """
    return bridge.iterate(arun_many(items, concurrency=concurrency, ordered=ordered, isolation=isolation,
                                    timeout=timeout, memory_mb=memory_mb, pids=pids, cpus=cpus, disk_mb=disk_mb,
                                    env=env))
