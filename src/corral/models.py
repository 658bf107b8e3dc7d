"""The data users see: what a sandbox is asked for, and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral.errors import InvalidInputError
from corral.protocol import wire

#: ``cpp`` runs are one-shot: compiled with g++, then run (see corral.cpp).
Language = Literal["python", "javascript", "shell", "cpp"]
StreamName = Literal["stdout", "stderr"]

_Model = TypeVar("_Model", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


#: Memory that full file systems always leave to the agent.
AGENT_RESERVE_MB = 32
#: /dev/shm holds POSIX shared memory and semaphores; it needs little room.
SHM_MAX_MB = 64


class Limits(_Frozen):
    """Resource limits for one sandbox; each is enforced outside the user's code."""

    timeout: float = Field(default=30.0, gt=0, le=24 * 3600, description="wall-clock seconds per run")
    memory_mb: int = Field(default=256, ge=64, le=1024 * 1024, description="memory of the whole sandbox")
    pids: int = Field(default=256, ge=16, le=1 << 22, description="processes and threads at once")
    cpus: float | None = Field(default=1.0, gt=0, le=1024, description="CPU share; None for no cap")
    disk_mb: int | None = Field(
        default=None, ge=1, le=1024 * 1024,
        description="size of each writable tmpfs (home, /tmp); None: a third of what memory_mb leaves",
    )
    stdout_limit: int = Field(default=wire.DEFAULT_STDOUT_LIMIT, ge=0, le=256 * 1024 * 1024)
    stderr_limit: int = Field(default=wire.DEFAULT_STDERR_LIMIT, ge=0, le=256 * 1024 * 1024)

    @model_validator(mode="after")
    def _tmpfs_fits_in_memory(self) -> Limits:
        # tmpfs pages are memory charged to the sandbox: full file systems must not leave
        # the agent without room, or the OOM killer would have nothing left to pick but it
        if self.disk_mb is not None and self.tmpfs_total_mb > self.memory_mb - AGENT_RESERVE_MB:
            raise ValueError(
                f"disk_mb={self.disk_mb} needs {self.tmpfs_total_mb} MB of memory for home, /tmp and /dev/shm "
                f"(tmpfs is memory), more than memory_mb={self.memory_mb} minus {AGENT_RESERVE_MB} MB for corral's "
                "agent: raise memory_mb or lower disk_mb"
            )
        return self

    @property
    def writable_mb(self) -> int:
        """Size of each of home and /tmp in MB (``disk_mb``, or derived from ``memory_mb``)."""
        if self.disk_mb is not None:
            return self.disk_mb
        return max(1, min(1024, (self.memory_mb - AGENT_RESERVE_MB) // 3))

    @property
    def shm_mb(self) -> int:
        """Size of /dev/shm in MB."""
        return min(self.writable_mb, SHM_MAX_MB)

    @property
    def tmpfs_total_mb(self) -> int:
        """Memory all writable file systems can hold together."""
        return 2 * self.writable_mb + self.shm_mb


def check_env(env: dict[str, str] | None) -> dict[str, str]:
    """Validate environment variables (name syntax, sizes, blocklist); raise ValueError."""
    env = dict(env or {})
    problem = wire.env_problems(env)
    if problem:
        raise ValueError(problem)
    return env


class SandboxSpec(_Frozen):
    """Everything needed to start a sandbox; equal specs can share a warm pool."""

    language: Language = "python"
    isolation: str = "auto"
    limits: Limits = Field(default_factory=Limits)
    env: tuple[tuple[str, str], ...] = ()

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> tuple[tuple[str, str], ...]:
        if isinstance(value, dict) or value is None:
            return tuple(sorted(check_env(value).items()))
        return value

    @property
    def env_dict(self) -> dict[str, str]:
        """The environment as a dict."""
        return dict(self.env)


@dataclass(frozen=True)
class ResourceUsage:
    """Resource use of one sandbox so far, as the host measures it (its cgroup); a run reports the difference."""

    cpu_time_ms: float | None
    memory_peak_mb: float | None
    oom_kills: int


class TimingBreakdown(_Frozen):
    """Where the time of one run went, in milliseconds."""

    setup_ms: float = 0.0
    boot_ms: float = 0.0
    execute_ms: float = 0.0
    total_ms: float = 0.0
    spawn_ms: float = 0.0
    process_ms: float = 0.0


class DisplayResult(_Frozen):
    """One rich output of a session block, as a MIME bundle: ``data`` maps MIME types to content.

    ``text/plain`` always; ``text/html``, ``text/markdown``, ``image/svg+xml``, ``image/png`` and
    ``image/jpeg`` (base64), ``application/json`` (the JSON value), ``text/latex``... as the object
    offers them. ``is_main_result``: the value of the block's last expression (else ``display()``
    or a matplotlib figure).
    """

    data: dict[str, Any]
    is_main_result: bool = False

    @property
    def text(self) -> str | None:
        """The ``text/plain`` form."""
        return self.data.get("text/plain")

    @property
    def formats(self) -> list[str]:
        """The MIME types present."""
        return list(self.data)


class ExecutionError(_Frozen):
    """The uncaught exception that ended a session block: its class name, message and traceback text."""

    name: str
    value: str
    traceback: str


class ExecutionResult(_Frozen):
    """The outcome of running code. The code failing is data here, never an exception."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False
    signal: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    session_reset: bool = False
    warm_pool_hit: bool = False
    cpu_time_ms: float | None = None
    memory_peak_mb: float | None = None
    language: Language = "python"
    isolation: str = "process"
    timing: TimingBreakdown = Field(default_factory=TimingBreakdown)
    #: Rich outputs of a session block (``run``): display() calls and figures in order, and the main result.
    results: list[DisplayResult] = Field(default_factory=list)
    #: The uncaught exception of a session block, if one ended it (the traceback is on stderr too).
    error: ExecutionError | None = None

    @property
    def text(self) -> str | None:
        """The ``text/plain`` of the main result (the block's last expression), if any."""
        for result in self.results:
            if result.is_main_result:
                return result.text
        return None

    @property
    def ok(self) -> bool:
        """True when the code exited 0 within its limits."""
        return self.exit_code == 0 and not (self.timed_out or self.oom_killed or self.cancelled)


class OutputEvent(_Frozen):
    """A chunk of output while code runs."""

    stream: StreamName
    data: str


class BackgroundCommand(_Frozen):
    """A command started in the background: its pid inside the sandbox and its log file."""

    pid: int
    log_path: str


class ProcessInfo(_Frozen):
    """A process started with ``commands.start`` that is still running."""

    pid: int
    cmd: str
    cwd: str
    env: dict[str, str]
    tag: str | None = None
    #: It has a stdin pipe that is still open.
    stdin: bool = False


class FileInfo(_Frozen):
    """What a path inside a sandbox is (``files.stat``): a symlink is described, not followed."""

    name: str
    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    uid: int
    gid: int
    symlink_target: str | None = None


class FileEvent(_Frozen):
    """A change below a watched directory; ``name`` is relative to it. ``overflow``: events were lost."""

    kind: Literal["create", "write", "remove", "rename", "chmod", "overflow"]
    name: str
    is_dir: bool = False


class FileEntry(_Frozen):
    """One entry of a directory inside a sandbox."""

    name: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float


def validated(model: type[_Model], **fields: Any) -> _Model:
    """Build ``model``, turning validation failures into InvalidInputError."""
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'input'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidInputError(problems) from None
