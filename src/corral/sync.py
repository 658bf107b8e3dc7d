"""The synchronous API: ``Sandbox``, ``Pool`` and ``run``, mirroring the async ones.

Same names, same arguments, same results as :mod:`corral.sandbox`,
:mod:`corral.pool` and :mod:`corral.oneshot`; each call runs on the shared
background loop of :mod:`corral.sync_bridge`. Output callbacks given to a
call run in the calling thread, before the call returns (see docs/api.md,
"Callbacks and threads").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from corral.batch.many import arun_many
from corral.batch.runner import Items
from corral.batch.verdicts import BatchResult
from corral.models import ExecutionResult, Language, OutputEvent, SandboxSpec
from corral.network import EgressDecision, ExposedPort, Network, PortMapping
from corral.oneshot import arun
from corral.output import OutputCallback
from corral.pool import AsyncPool
from corral.sandbox import AsyncSandbox
from corral.sync_bridge import Relay, bridge
from corral.sync_commands import Commands
from corral.sync_files import FileWatch, Files
from corral.terminal import AsyncTerminal

__all__ = ["FileWatch", "Files", "Pool", "Sandbox", "Terminal", "run", "run_many"]


class Sandbox:
    """A sandbox that lives until closed; ``with`` starts and closes it. See AsyncSandbox."""

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
        pool: Pool | None = None,
    ):
        self._async = bridge.call(_construct(AsyncSandbox, language, isolation=isolation, timeout=timeout,
                                             memory_mb=memory_mb, pids=pids, cpus=cpus, disk_mb=disk_mb,
                                             stdout_limit=stdout_limit, stderr_limit=stderr_limit, env=env,
                                             network=network, expose=expose, packages=packages, index_url=index_url,
                                             pool=pool._async if pool else None))
        self.files = Files(self._async.files)
        self.commands = Commands(self._async)

    @property
    def spec(self) -> SandboxSpec:
        """The validated configuration."""
        return self._async.spec

    @property
    def language(self) -> Language:
        """Default language of ``run``."""
        return self._async.language

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

    def install(self, packages: list[str], *, language: Language | None = None, index_url: str | None = None,
                timeout: float = 300.0, on_stdout: OutputCallback | None = None,
                on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Install pinned packages into the sandbox (see AsyncSandbox.install); callbacks run in this thread."""
        relay = Relay()
        return bridge.call(self._async.install(packages, language=language, index_url=index_url, timeout=timeout,
                                               on_stdout=relay.wrap(on_stdout), on_stderr=relay.wrap(on_stderr)),
                           relay)

    def start(self, *, memory_snapshot: Path | None = None) -> Sandbox:
        """Start the sandbox (``with`` does it for you); ``memory_snapshot``: continue a paused one."""
        bridge.call(self._async.start(memory_snapshot=memory_snapshot))
        return self

    def pause_memory(self, directory: Path) -> None:
        """Save the whole sandbox, memory included, into ``directory`` and close it (``microvm``)."""
        bridge.call(self._async.pause_memory(directory))

    def kill(self) -> None:
        """Stop the sandbox; teardown finishes in the background. Idempotent."""
        bridge.call(self._async.kill())

    def close(self) -> None:
        """The same as :meth:`kill` (a local sandbox cannot outlive its object); ``with`` calls it."""
        bridge.call(self._async.close())

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stream(self, code: str, *, language: Language | None = None, timeout: float | None = None,
               env: dict[str, str] | None = None, cwd: str | None = None) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session; yield OutputEvents, then the ExecutionResult."""
        return bridge.iterate(self._async.stream(code, language=language, timeout=timeout, env=env, cwd=cwd))

    def terminal(self, *, cols: int = 80, rows: int = 24, command: str | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> Terminal:
        """A program on a pseudo-terminal (``command`` None: an interactive bash); use it with ``with``."""
        return Terminal(bridge.call(self._async.terminal(cols=cols, rows=rows, command=command, env=env, cwd=cwd)))

    def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
            env: dict[str, str] | None = None, cwd: str | None = None,
            on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``code`` in the session interpreter (state is kept between calls).

        Callbacks are called in this thread, as the output arrives.
        """
        relay = Relay()
        return bridge.call(self._async.run(code, language=language, timeout=timeout, env=env, cwd=cwd,
                                           on_stdout=relay.wrap(on_stdout), on_stderr=relay.wrap(on_stderr)), relay)


async def _construct(cls: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` built on the bridge's loop, so that its asyncio objects belong there."""
    return cls(*args, **kwargs)


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


class Pool:
    """Warm sandboxes for one configuration. See AsyncPool."""

    def __init__(self, size: int = 4, *, language: Language = "python", isolation: str = "auto",
                 env: dict[str, str] | None = None, recycle: bool = False, timeout: float | None = None,
                 memory_mb: int | None = None, pids: int | None = None, cpus: float | None = None,
                 disk_mb: int | None = None, stdout_limit: int | None = None, stderr_limit: int | None = None):
        self._async = bridge.call(_construct(AsyncPool, size, language=language, isolation=isolation, env=env,
                                             recycle=recycle, timeout=timeout, memory_mb=memory_mb, pids=pids,
                                             cpus=cpus, disk_mb=disk_mb, stdout_limit=stdout_limit,
                                             stderr_limit=stderr_limit))

    def start(self, *, wait: bool = True) -> Pool:
        """Begin filling; with ``wait`` return once the pool is full."""
        bridge.call(self._async.start(wait=wait))
        return self

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
            env: dict[str, str] | None = None, stdin: bytes | str | None = None,
            files: dict[str, bytes | str] | None = None,
            on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``code`` once in a fresh process on a warm sandbox; callbacks run in this thread."""
        relay = Relay()
        return bridge.call(self._async.run(code, language=language, timeout=timeout, env=env, stdin=stdin,
                                           files=files, on_stdout=relay.wrap(on_stdout),
                                           on_stderr=relay.wrap(on_stderr)), relay)

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


def run(
    code: str,
    language: Language = "python",
    *,
    isolation: str = "auto",
    timeout: float | None = None,
    memory_mb: int | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    disk_mb: int | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | str | None = None,
    network: Network | None = None,
    expose: list[PortMapping | int] | None = None,
    packages: list[str] | None = None,
    index_url: str | None = None,
    files: dict[str, bytes | str] | None = None,
    fresh: bool = False,
    pool: Pool | None = None,
    pool_size: int | None = None,
    on_stdout: OutputCallback | None = None,
    on_stderr: OutputCallback | None = None,
    on_exposed: Callable[[list[ExposedPort]], Any] | None = None,
) -> ExecutionResult:
    """Run ``code`` once in a fresh sandbox (or on ``pool``/``pool_size=N``). See ``corral.arun``.

    The callbacks (``on_stdout``, ``on_stderr``, ``on_exposed``) are called in this thread.
    """
    relay = Relay()
    return bridge.call(arun(code, language, isolation=isolation, timeout=timeout, memory_mb=memory_mb, pids=pids,
                            cpus=cpus, disk_mb=disk_mb, env=env, stdin=stdin, network=network, expose=expose,
                            packages=packages, index_url=index_url, files=files, fresh=fresh,
                            pool=pool._async if pool else None, pool_size=pool_size,
                            on_stdout=relay.wrap(on_stdout), on_stderr=relay.wrap(on_stderr),
                            on_exposed=relay.wrap(on_exposed)), relay)


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
