"""``HostedSandbox``: the synchronous mirror of AsyncHostedSandbox (same names, same arguments).

Each call runs on corral's background loop (:mod:`corral.sync_bridge`); callbacks
(``on_stdout``, ``on_stderr``, ``on_progress``) are called in the calling thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from corral.client.handle import AsyncHostedSandbox, deprecated, resolve_ttl
from corral.client.terminal import AsyncHostedTerminal
from corral.client.transport import ProgressCallback
from corral.contract.schemas import (
    LogEvent,
    SandboxInfo,
    SnapshotInfo,
    TemplateDefinition,
    TemplateInfo,
)
from corral.contract.states import SandboxState
from corral.models import (
    BackgroundCommand,
    ExecutionResult,
    Language,
    OutputEvent,
    ProcessInfo,
)
from corral.output import OutputCallback
from corral.sync_bridge import Relay, bridge
from corral.sync_files import Files


class HostedSandbox:
    """A hosted sandbox; get one from :meth:`create`, :meth:`connect` or :meth:`resume`. See AsyncHostedSandbox."""

    def __init__(self, handle: AsyncHostedSandbox):
        self._async = handle
        self.files = Files(handle.files)  # the same sync wrapper as a local sandbox's files
        self.commands = HostedCommands(handle)

    @classmethod
    def create(cls, template: str = "python", *, server: str | None = None, api_key: str | None = None,
               ttl: float | None = None, metadata: dict[str, str] | None = None, env: dict[str, str] | None = None,
               run_timeout: float | None = None, memory_mb: int | None = None, pids: int | None = None,
               cpus: float | None = None, disk_mb: int | None = None, timeout: float | None = None) -> HostedSandbox:
        """Start a sandbox from ``template`` living ``ttl`` seconds (see AsyncHostedSandbox.create)."""
        ttl = resolve_ttl(ttl, timeout, "create")
        return cls(bridge.call(AsyncHostedSandbox.create(
            template, server=server, api_key=api_key, ttl=ttl, metadata=metadata, env=env, run_timeout=run_timeout,
            memory_mb=memory_mb, pids=pids, cpus=cpus, disk_mb=disk_mb)))

    @classmethod
    def connect(cls, sandbox_id: str, *, server: str | None = None, api_key: str | None = None,
                access_token: str | None = None) -> HostedSandbox:
        """Attach to an existing sandbox (by its owner's key, or by its own access token)."""
        return cls(bridge.call(AsyncHostedSandbox.connect(sandbox_id, server=server, api_key=api_key,
                                                          access_token=access_token)))

    @classmethod
    def list(cls, *, server: str | None = None, api_key: str | None = None, metadata: dict[str, str] | None = None,
             state: SandboxState | str | None = None) -> list[SandboxInfo]:
        """Sandboxes (of this key, or of local mode) whose metadata matches, newest first."""
        return bridge.call(AsyncHostedSandbox.list(server=server, api_key=api_key, metadata=metadata, state=state))

    @classmethod
    def resume(cls, snapshot_id: str, *, server: str | None = None, api_key: str | None = None,
               ttl: float | None = None, metadata: dict[str, str] | None = None,
               timeout: float | None = None) -> HostedSandbox:
        """A new running sandbox continuing a snapshot, living ``ttl`` seconds."""
        ttl = resolve_ttl(ttl, timeout, "resume")
        return cls(bridge.call(AsyncHostedSandbox.resume(snapshot_id, server=server, api_key=api_key, ttl=ttl,
                                                         metadata=metadata)))

    @staticmethod
    def build_template(definition: dict[str, Any] | TemplateDefinition, *, server: str | None = None,
                       api_key: str | None = None, on_progress: ProgressCallback | None = None) -> TemplateInfo:
        """Build a template; ``on_progress(step, total, message)`` is called in this thread."""
        relay = Relay()
        return bridge.call(AsyncHostedSandbox.build_template(definition, server=server, api_key=api_key,
                                                             on_progress=relay.wrap(on_progress)), relay)

    @property
    def id(self) -> str:
        """The sandbox's id."""
        return self._async.id

    @property
    def info(self) -> SandboxInfo:
        """The sandbox's record as last fetched."""
        return self._async.info

    @property
    def access_token(self) -> str | None:
        """The token granting this sandbox's data plane only."""
        return self._async.access_token

    @property
    def metadata(self) -> dict[str, str]:
        """The metadata given at creation."""
        return self._async.metadata

    def refresh(self) -> SandboxInfo:
        """Fetch the current record."""
        return bridge.call(self._async.refresh())

    def set_ttl(self, seconds: float) -> SandboxInfo:
        """Keep the sandbox alive ``seconds`` more, from now."""
        return bridge.call(self._async.set_ttl(seconds))

    def set_timeout(self, seconds: float) -> SandboxInfo:
        """Deprecated name of :meth:`set_ttl`."""
        deprecated("set_timeout() is deprecated: call set_ttl()")
        return self.set_ttl(seconds)

    def events(self) -> list[LogEvent]:
        """The sandbox's lifecycle events, oldest first."""
        return bridge.call(self._async.events())

    def pause(self) -> SnapshotInfo:
        """Capture the sandbox into a snapshot and stop it."""
        return bridge.call(self._async.pause())

    def kill(self) -> None:
        """Stop the sandbox (idempotent)."""
        bridge.call(self._async.kill())

    def disconnect(self) -> None:
        """Release connections; the sandbox keeps running."""
        bridge.call(self._async.disconnect())

    def close(self) -> None:
        """Deprecated name of :meth:`disconnect` (a local sandbox's ``close`` kills it: call kill or disconnect)."""
        deprecated("close() of a hosted sandbox is deprecated: call disconnect() (it keeps running) or kill()")
        self.disconnect()

    def __enter__(self) -> HostedSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def terminal(self, *, cols: int = 80, rows: int = 24, command: str | None = None) -> HostedTerminal:
        """An interactive terminal (``command`` None: ``bash -i``); use it with ``with``."""
        return HostedTerminal(bridge.call(self._async.terminal(cols=cols, rows=rows, command=command)))

    def stream(self, code: str, *, language: Language | None = None, timeout: float | None = None,
               env: dict[str, str] | None = None, cwd: str | None = None) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session; yield OutputEvents, then the ExecutionResult."""
        return bridge.iterate(self._async.stream(code, language=language, timeout=timeout, env=env, cwd=cwd))

    def run(self, code: str, *, language: Language | None = None, timeout: float | None = None,
            env: dict[str, str] | None = None, cwd: str | None = None,
            on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecutionResult:
        """Run ``code`` in the session interpreter; callbacks are called in this thread."""
        relay = Relay()
        return bridge.call(self._async.run(code, language=language, timeout=timeout, env=env, cwd=cwd,
                                           on_stdout=relay.wrap(on_stdout), on_stderr=relay.wrap(on_stderr)), relay)


class HostedTerminal:
    """An interactive terminal in a hosted sandbox. See AsyncHostedTerminal."""

    def __init__(self, terminal: AsyncHostedTerminal):
        self._async = terminal

    @property
    def exit_code(self) -> int | None:
        """The program's exit status once it ended."""
        return self._async.exit_code

    def write(self, data: str) -> None:
        """Type ``data``."""
        bridge.call(self._async.write(data))

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size."""
        bridge.call(self._async.resize(cols, rows))

    def read_until(self, text: str) -> str:
        """Output up to and including the first ``text``."""
        return bridge.call(self._async.read_until(text))

    def __iter__(self) -> Iterator[str]:
        return bridge.iterate(self._async.__aiter__())

    def close(self) -> None:
        """Kill the program if it still runs."""
        bridge.call(self._async.close())

    def __enter__(self) -> HostedTerminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class HostedCommands:
    """Shell commands in a hosted sandbox. See AsyncHostedCommands."""

    def __init__(self, handle: AsyncHostedSandbox):
        self._handle = handle

    def run(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float | None = None, background: bool = False, on_stdout: OutputCallback | None = None,
            on_stderr: OutputCallback | None = None) -> ExecutionResult | BackgroundCommand:
        """Run ``cmd`` with bash; callbacks are called in this thread."""
        relay = Relay()
        return bridge.call(self._handle.commands.run(cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout,
                                                     background=background, on_stdout=relay.wrap(on_stdout),
                                                     on_stderr=relay.wrap(on_stderr)), relay)

    def start(self, cmd: str, *, cwd: str | None = None, env: dict[str, str] | None = None, stdin: bool = False,
              timeout: float | None = None) -> BackgroundCommand:
        """Start ``cmd`` in the background; its pid and log file."""
        return bridge.call(self._handle.commands.start(cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout))

    def list(self) -> list[ProcessInfo]:
        """The background commands still running."""
        return bridge.call(self._handle.commands.list())

    def kill(self, pid: int, signal: str | int = "SIGKILL") -> bool:
        """Signal background command ``pid``; False if it had ended."""
        return bridge.call(self._handle.commands.kill(pid, signal))

    def send_stdin(self, pid: int, data: bytes | str) -> None:
        """Write ``data`` to the stdin of background command ``pid``."""
        bridge.call(self._handle.commands.send_stdin(pid, data))

    def close_stdin(self, pid: int) -> None:
        """Close the stdin of background command ``pid``."""
        bridge.call(self._handle.commands.close_stdin(pid))
