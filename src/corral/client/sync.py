"""``HostedSandbox``: the synchronous mirror of AsyncHostedSandbox (same names, same arguments).

Each call runs on corral's background loop (:mod:`corral.sync_bridge`); output
callbacks are called in the caller's thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from corral.client.handle import AsyncHostedSandbox
from corral.client.terminal import AsyncHostedTerminal
from corral.client.transport import OutputCallback
from corral.models import BackgroundCommand, ExecutionResult, OutputEvent, ProcessInfo
from corral.contract.schemas import LogEvent, SandboxInfo, SnapshotInfo, TemplateInfo
from corral.sync import Files, consume
from corral.sync_bridge import bridge


class HostedSandbox:
    """A hosted sandbox; get one from :meth:`create`, :meth:`connect` or :meth:`resume`. See AsyncHostedSandbox."""

    def __init__(self, handle: AsyncHostedSandbox):
        self._async = handle
        self.files = Files(handle)  # the same sync wrapper as a local sandbox's files
        self.commands = HostedCommands(handle)

    @classmethod
    def create(cls, template: str = "python", **options: Any) -> HostedSandbox:
        """Start a sandbox from ``template`` (``server=``, ``api_key=``, ``timeout=``, ``metadata=``, limits)."""
        return cls(bridge.call(AsyncHostedSandbox.create(template, **options)))

    @classmethod
    def connect(cls, sandbox_id: str, **options: Any) -> HostedSandbox:
        """Attach to an existing sandbox (``server=``, ``api_key=`` or ``access_token=``)."""
        return cls(bridge.call(AsyncHostedSandbox.connect(sandbox_id, **options)))

    @classmethod
    def list(cls, **options: Any) -> list[SandboxInfo]:
        """Sandboxes whose metadata matches (``server=``, ``api_key=``, ``metadata=``, ``state=``)."""
        return bridge.call(AsyncHostedSandbox.list(**options))

    @classmethod
    def resume(cls, snapshot_id: str, **options: Any) -> HostedSandbox:
        """A new running sandbox continuing a snapshot (``server=``, ``api_key=``, ``timeout=``)."""
        return cls(bridge.call(AsyncHostedSandbox.resume(snapshot_id, **options)))

    @staticmethod
    def build_template(definition: Any, **options: Any) -> TemplateInfo:
        """Build a template (``server=``, ``api_key=``, ``on_progress=``, called on corral's loop thread)."""
        return bridge.call(AsyncHostedSandbox.build_template(definition, **options))

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

    def set_timeout(self, seconds: float) -> SandboxInfo:
        """Keep the sandbox alive ``seconds`` more, from now."""
        return bridge.call(self._async.set_timeout(seconds))

    def events(self) -> list[LogEvent]:
        """The sandbox's lifecycle events, oldest first."""
        return bridge.call(self._async.events())

    def pause(self) -> SnapshotInfo:
        """Capture the sandbox into a snapshot and stop it."""
        return bridge.call(self._async.pause())

    def kill(self) -> None:
        """Stop the sandbox (idempotent)."""
        bridge.call(self._async.kill())

    def close(self) -> None:
        """Release connections; the sandbox keeps running."""
        bridge.call(self._async.close())

    def __enter__(self) -> HostedSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def terminal(self, **options: Any) -> HostedTerminal:
        """An interactive terminal (``cols=``, ``rows=``, ``command=``); use it with ``with``."""
        return HostedTerminal(bridge.call(self._async.terminal(**options)))

    def stream(self, code: str, **options: Any) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session; yield OutputEvents, then the ExecutionResult."""
        return bridge.iterate(self._async.stream(code, **options))

    def run(self, code: str, *, on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
            **options: Any) -> ExecutionResult:
        """Run ``code`` in the session interpreter; callbacks are called in this thread."""
        if on_stdout is None and on_stderr is None:
            return bridge.call(self._async.run(code, **options))
        return consume(self.stream(code, **options), on_stdout, on_stderr)


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

    def run(self, cmd: str, **options: Any) -> ExecutionResult | BackgroundCommand:
        """Run ``cmd`` with bash (callbacks run on corral's loop thread)."""
        return bridge.call(self._handle.commands.run(cmd, **options))

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
