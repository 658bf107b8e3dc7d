"""Wire messages as pydantic models, validated on the host side.

Host to agent: requests, each with a fresh integer ``id``. Agent to host: a
``hello`` once at start, then for each request zero or more ``output`` events
followed by exactly one terminal message (``exec_done``, ``file_data``,
``dir_listing``, ``ack`` or ``error``) carrying the same ``id``.
The agent validates the same rules again with :mod:`corral.protocol.wire`.

The host's codec is pydantic's JSON (faster than the stdlib's: 8x to encode an exec
request, 13x to decode a 12 MiB file read; ``benchmarks/bench_codec.py``); it writes
the bytes :func:`corral.protocol.wire.encode_frame` writes. Text with a lone
surrogate (a file name that is not UTF-8, in Python's surrogateescape form) is
not UTF-8, so pydantic can neither write nor read it: those frames go through
the agent's stdlib codec instead, as before. NaN and Infinity are refused either
way: no model holds one (``allow_inf_nan=False``), the parser refuses their
tokens, and a number too large for a float (``1e400``) fails validation.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticSerializationError, from_json

from corral.protocol import wire

Language = Literal["python", "javascript", "shell"]
StreamName = Literal["stdout", "stderr"]


class _Message(BaseModel):
    # strict: a field of the wrong JSON type is an error, never coerced ("1" is not 1); no NaN or Infinity,
    # and one that bypassed validation (model_construct) is written as the token the agent refuses, not as null
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True, allow_inf_nan=False,
                              ser_json_inf_nan="constants")


# --- host -> agent -------------------------------------------------------


class RunFile(_Message):
    """A file written into an isolated run's fresh home before its code starts."""

    path: str
    data_b64: str
    mode: int = Field(default=0o644, ge=0, le=0o777)


class ExecRequest(_Message):
    """Run code: a fresh process (``session=False``) or in the session's interpreter."""

    type: Literal["exec"] = "exec"
    id: int
    language: Language
    code: str = Field(max_length=wire.MAX_CODE_BYTES)
    session: bool = False
    #: The sandbox is discarded after this run: start no spare for a next one.
    retire: bool = False
    timeout_ms: int = Field(gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    stdin_b64: str | None = None
    stdout_limit: int = Field(default=wire.DEFAULT_STDOUT_LIMIT, ge=0)
    stderr_limit: int = Field(default=wire.DEFAULT_STDERR_LIMIT, ge=0)
    #: Run in fresh namespaces of the run's own: fresh home, /tmp, /dev/shm, pid and IPC namespace.
    isolated: bool = False
    #: Files for the isolated run's fresh home (only with ``isolated``).
    files: list[RunFile] = Field(default_factory=list, max_length=wire.MAX_RUN_FILES)


class FileWriteRequest(_Message):
    """Create or replace a file inside the sandbox."""

    type: Literal["file_write"] = "file_write"
    id: int
    path: str
    data_b64: str
    mode: int = Field(default=0o644, ge=0, le=0o7777)


class FileReadRequest(_Message):
    """Read a whole file inside the sandbox."""

    type: Literal["file_read"] = "file_read"
    id: int
    path: str


class FileListRequest(_Message):
    """List a directory inside the sandbox."""

    type: Literal["file_list"] = "file_list"
    id: int
    path: str


class FileRemoveRequest(_Message):
    """Remove a file, or a directory tree when ``recursive``."""

    type: Literal["file_remove"] = "file_remove"
    id: int
    path: str
    recursive: bool = False


class FileStatRequest(_Message):
    """Describe one path (a symlink is described, not followed)."""

    type: Literal["file_stat"] = "file_stat"
    id: int
    path: str


class FileMkdirRequest(_Message):
    """Create a directory (``parents``: and its missing parents)."""

    type: Literal["file_mkdir"] = "file_mkdir"
    id: int
    path: str
    parents: bool = False


class FileRenameRequest(_Message):
    """Move ``source`` to ``destination``."""

    type: Literal["file_rename"] = "file_rename"
    id: int
    source: str
    destination: str


class WatchStartRequest(_Message):
    """Report changes below a directory as ``fs_event`` events until cancelled."""

    type: Literal["watch_start"] = "watch_start"
    id: int
    path: str
    recursive: bool = False


# processes with handles (served by corral.agent.processes): ``process_start`` and
# ``process_attach`` stream ``process_started``, ``output``... and end with ``exec_done``
# (or ``ack`` once detached by a ``cancel`` naming them); the others address a process by pid


class ProcessStartRequest(_Message):
    """Start ``bash -c cmd`` as a process of the sandbox and stream its output."""

    type: Literal["process_start"] = "process_start"
    id: int
    cmd: str = Field(max_length=wire.MAX_CODE_BYTES)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    #: Give the process a stdin pipe (``process_input``); else it reads /dev/null.
    stdin: bool = False
    tag: str | None = Field(default=None, max_length=256)
    #: Kill the process after this long (0: never).
    timeout_ms: int = Field(default=0, ge=0)


class ProcessAttachRequest(_Message):
    """Stream a running process's output (``replay``: its buffered latest output first)."""

    type: Literal["process_attach"] = "process_attach"
    id: int
    pid: int
    replay: bool = False


class ProcessInputRequest(_Message):
    """Write bytes to a process's stdin."""

    type: Literal["process_input"] = "process_input"
    id: int
    pid: int
    data_b64: str


class ProcessCloseStdinRequest(_Message):
    """Close a process's stdin (EOF) once what was written reached it."""

    type: Literal["process_close_stdin"] = "process_close_stdin"
    id: int
    pid: int


class ProcessSignalRequest(_Message):
    """Signal a process (9: kill its whole tree)."""

    type: Literal["process_signal"] = "process_signal"
    id: int
    pid: int
    signal: Literal[1, 2, 9, 15] = 9


class ProcessListRequest(_Message):
    """The processes started with ``process_start`` that are still running."""

    type: Literal["process_list"] = "process_list"
    id: int


class CancelRequest(_Message):
    """Stop the operation ``target`` (its process tree is killed)."""

    type: Literal["cancel"] = "cancel"
    id: int
    target: int


class PingRequest(_Message):
    """Health check: the agent answers ``ack`` if its loop is alive."""

    type: Literal["ping"] = "ping"
    id: int


class EgressRequest(_Message):
    """Start (or stop) the agent's 127.0.0.1:<port> end of the host's egress proxy."""

    type: Literal["egress"] = "egress"
    id: int
    enable: bool
    port: int = Field(default=wire.EGRESS_RELAY_PORT, ge=1, le=65535)


class PortConnectRequest(_Message):
    """Connect 127.0.0.1:<port> inside the sandbox to the host's port socket, presenting ``token``."""

    type: Literal["port_connect"] = "port_connect"
    id: int
    port: int = Field(ge=1, le=65535)
    token: str = Field(min_length=16, max_length=128)


class ResetRequest(_Message):
    """Return an idle sandbox to the state of a new one (for reuse by a pool)."""

    type: Literal["reset"] = "reset"
    id: int


class ConfigureRequest(_Message):
    """Per-VM settings sent once after a boot or a snapshot restore, before any run."""

    type: Literal["configure"] = "configure"
    id: int
    env: dict[str, str] = Field(default_factory=dict)
    #: Language whose one-shot child the agent keeps pre-started (None: none).
    prefork: Literal["python", "javascript"] | None = None
    #: Host entropy the agent credits to the kernel RNG before reseeding it.
    entropy_b64: str = ""
    #: Resource limits (``RLIMIT_*`` name -> value) for every process user code starts.
    rlimits: dict[str, int] = Field(default_factory=dict)
    #: Limits of the cgroup user code runs in, where the agent has one (0: unset). Without a
    #: cgroup, ``pids`` becomes ``RLIMIT_NPROC``.
    memory_bytes: int = Field(default=0, ge=0)
    pids: int = Field(default=0, ge=0)
    #: The seccomp filter (raw BPF, base64) every child installs before user code ("": none).
    user_seccomp_b64: str = ""


class ReseedRequest(_Message):
    """Fresh host entropy for a VM resumed from a continuation snapshot (allowed at any time)."""

    type: Literal["reseed"] = "reseed"
    id: int
    entropy_b64: str


# interactive terminals (served by corral.agent.pty): the open request streams ``output``
# events and ends with ``exec_done``; input and resize name it as their ``target``


class PtyOpenRequest(_Message):
    """Start ``command`` (an interactive bash when None) on a new pseudo-terminal."""

    type: Literal["pty_open"] = "pty_open"
    id: int
    cols: int = Field(ge=1, le=1000)
    rows: int = Field(ge=1, le=1000)
    command: str | None = Field(default=None, max_length=wire.MAX_CODE_BYTES)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class PtyInputRequest(_Message):
    """Type bytes into the terminal opened by request ``target``."""

    type: Literal["pty_input"] = "pty_input"
    id: int
    target: int
    data_b64: str


class PtyResizeRequest(_Message):
    """Set the window size of the terminal opened by request ``target``."""

    type: Literal["pty_resize"] = "pty_resize"
    id: int
    target: int
    cols: int = Field(ge=1, le=1000)
    rows: int = Field(ge=1, le=1000)


Request = Annotated[
    Union[
        ExecRequest,
        FileWriteRequest,
        FileReadRequest,
        FileListRequest,
        FileRemoveRequest,
        CancelRequest,
        PingRequest,
        ResetRequest,
        ConfigureRequest,
        ReseedRequest,
        EgressRequest,
        PortConnectRequest,
        PtyOpenRequest,
        PtyInputRequest,
        PtyResizeRequest,
        FileStatRequest,
        FileMkdirRequest,
        FileRenameRequest,
        WatchStartRequest,
        ProcessStartRequest,
        ProcessAttachRequest,
        ProcessInputRequest,
        ProcessCloseStdinRequest,
        ProcessSignalRequest,
        ProcessListRequest,
    ],
    Field(discriminator="type"),
]

# --- agent -> host -------------------------------------------------------


class Hello(_Message):
    """First line the agent writes: it is ready for requests."""

    type: Literal["hello"] = "hello"
    version: int
    pid: int
    python: str
    landlock_abi: int = 0


class Output(_Message):
    """A chunk of a running program's stdout or stderr."""

    type: Literal["output"] = "output"
    id: int
    stream: StreamName
    data: str


class Result(_Message):
    """A rich result of a session block: a MIME bundle (``is_main_result``: the last expression's value)."""

    type: Literal["result"] = "result"
    id: int
    data: dict[str, Any]
    is_main_result: bool = False

    @field_validator("data")
    @classmethod
    def _finite(cls, data: dict[str, Any]) -> dict[str, Any]:
        """No float in the bundle is NaN or infinite (``Any`` skips the models' own check)."""
        pending: list[Any] = [data]
        while pending:  # a loop, not recursion: a bundle may nest deeper than the interpreter's stack
            value = pending.pop()
            if isinstance(value, dict):
                pending.extend(value.values())
            elif isinstance(value, list):
                pending.extend(value)
            elif isinstance(value, float) and not math.isfinite(value):
                raise ValueError("a result holds NaN or Infinity")
        return data


class RunError(_Message):
    """The uncaught exception that ended a session block."""

    type: Literal["run_error"] = "run_error"
    id: int
    name: str
    value: str
    traceback: str


class ExecDone(_Message):
    """How a run ended."""

    type: Literal["exec_done"] = "exec_done"
    id: int
    exit_code: int
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    session_reset: bool = False
    spawn_ms: float = 0.0
    process_ms: float = 0.0
    #: The guest kernel's OOM killer struck during the run (only sent by agents that own their kernel).
    oom_killed: bool = False
    #: CPU time of the user cgroup during the run, and its peak memory so far (agents that own their kernel).
    cpu_ms: float | None = None
    memory_peak_mb: float | None = None


class ProcessStarted(_Message):
    """First event of ``process_start`` and ``process_attach``: the process's pid and log file."""

    type: Literal["process_started"] = "process_started"
    id: int
    pid: int
    log_path: str


class ProcessInfo(_Message):
    """One running process of a ``process_list``."""

    pid: int
    cmd: str
    cwd: str
    env: dict[str, str]
    tag: str | None = None
    stdin: bool = False


class ProcessListing(_Message):
    """Answer to ``process_list``."""

    type: Literal["process_list"] = "process_list"
    id: int
    processes: list[ProcessInfo]


class StatEntry(_Message):
    """What a path is (``file_stat``, and the result of ``file_mkdir`` and ``file_rename``)."""

    name: str
    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    uid: int
    gid: int
    symlink_target: str | None = None


class FileStat(_Message):
    """Answer to ``file_stat``, ``file_mkdir`` and ``file_rename``."""

    type: Literal["file_stat"] = "file_stat"
    id: int
    entry: StatEntry


class WatchStarted(_Message):
    """A ``watch_start`` is in place: changes from now on are reported."""

    type: Literal["watch_started"] = "watch_started"
    id: int


class FsEvent(_Message):
    """One change below a watched directory (``name`` relative to it); ``overflow``: events were lost."""

    type: Literal["fs_event"] = "fs_event"
    id: int
    kind: Literal["create", "write", "remove", "rename", "chmod", "overflow"]
    name: str
    is_dir: bool = False


class FileData(_Message):
    """Contents of a file that was read."""

    type: Literal["file_data"] = "file_data"
    id: int
    data_b64: str


class DirEntry(_Message):
    """One entry of a directory listing."""

    name: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float


class DirListing(_Message):
    """Entries of a listed directory."""

    type: Literal["dir_listing"] = "dir_listing"
    id: int
    entries: list[DirEntry]


class Ack(_Message):
    """An operation without a payload finished."""

    type: Literal["ack"] = "ack"
    id: int
    size: int | None = None


ErrorCode = Literal[
    "invalid",
    "not_found",
    "exists",
    "is_directory",
    "not_directory",
    "permission",
    "read_only",
    "no_space",
    "too_large",
    "busy",
    "unknown_target",
    "internal",
    "broken",
]


class Error(_Message):
    """The operation ``id`` failed (``id`` is None for frames that could not be parsed)."""

    type: Literal["error"] = "error"
    id: int | None
    code: ErrorCode
    message: str


Event = Annotated[
    Union[Hello, Output, Result, RunError, ExecDone, ProcessStarted, ProcessListing, FileStat, WatchStarted, FsEvent, FileData,
          DirListing, Ack, Error],
    Field(discriminator="type"),
]
TERMINAL_TYPES = frozenset({"exec_done", "process_list", "file_stat", "file_data", "dir_listing", "ack", "error"})

#: Event model by its ``type`` tag: what the discriminated union ``Event`` picks from. Each model is
#: built on its first use (``defer_build``), so a start-up that sees only a few kinds builds only those.
EVENT_MODELS: dict[str, type[_Message]] = {
    model.model_fields["type"].default: model for model in get_args(get_args(Event)[0])
}


def parse_event(line: bytes) -> Event:
    """Decode and validate one agent-to-host line (raises ValueError on anything else)."""
    frame = decode_frame(line)
    model = EVENT_MODELS.get(frame["type"])
    if model is None:
        raise ValueError(f"unknown event type {frame['type'][:40]!r}; expected one of {', '.join(EVENT_MODELS)}")
    return model.model_validate(frame)


def decode_frame(line: bytes) -> dict:
    """Parse one protocol line with pydantic's JSON, as :func:`corral.protocol.wire.decode_frame` would.

    What pydantic's parser refuses (lone surrogates, nesting deeper than its limit, and every
    invalid frame) is parsed again by the stdlib codec, which accepts the first two and raises
    ValueError for the rest.
    """
    if len(line) > wire.MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(line)} bytes exceeds {wire.MAX_FRAME_BYTES}")
    try:
        frame = from_json(line, allow_inf_nan=False)
    except ValueError:
        return wire.decode_frame(line)
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("frame is not a JSON object with a string 'type'")
    return frame


def encode_request(request: BaseModel) -> bytes:
    """Encode a request model as one protocol line (the bytes :func:`corral.protocol.wire.encode_frame` writes)."""
    try:
        return request.__pydantic_serializer__.to_json(request) + b"\n"
    except PydanticSerializationError:  # a lone surrogate, which only the stdlib codec writes
        return wire.encode_frame(request.model_dump(mode="json"))
