"""The HTTP API's request and response bodies (and what the service returns).

Every request body is a :class:`RequestModel`: it forbids unknown fields, so a
typo is a 422 naming the field, not a silently ignored option, and it refuses
strings that are not valid Unicode (lone surrogates, which JSON's ``\\ud800``
escapes can carry but UTF-8 cannot), wherever they are: values, keys, nested
models. Answers never carry them either (see :func:`listed_file` for names
that are not UTF-8, and :mod:`corral.server.json_answers`).
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from corral.contract.states import SandboxState
from corral.models import FileEntry, Language, check_env
from corral.protocol import wire

#: Bounds on a sandbox's metadata (it is stored and filtered on, not interpreted).
MAX_METADATA_ITEMS = 32
MAX_METADATA_CHARS = 256
#: Default and largest time to live of a sandbox, in seconds.
DEFAULT_TTL_S = 300.0
MAX_TTL_S = 24 * 3600.0

#: Numbers and flags of requests are strict: ``true`` is not 1 and ``"5"`` is not 5.
Number = Annotated[float, Strict()]
Integer = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]


#: A UTF-16 surrogate code point: never a character on its own.
SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_problem(value: object, where: str = "") -> str | None:
    """Where ``value`` (JSON data: str, list, dict) holds a string that is not valid Unicode, or None."""
    if isinstance(value, str):
        match = SURROGATE.search(value)
        if match is None:
            return None
        return (f"{where or 'input'}: character {match.start()} is a lone surrogate "
                f"(U+{ord(match.group()):04X}); strings must be valid Unicode")
    if isinstance(value, dict):
        for key, item in value.items():
            problem = (unicode_problem(key, f"{where}.{SURROGATE.sub('?', str(key))}(key)".lstrip("."))
                       or unicode_problem(item, f"{where}.{SURROGATE.sub('?', str(key))}".lstrip(".")))
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = unicode_problem(item, f"{where}.{index}".lstrip("."))
            if problem:
                return problem
    return None


class RequestModel(BaseModel):
    """The base of every request body: unknown fields and strings that are not valid Unicode are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: object) -> object:
        problem = unicode_problem(data)
        if problem:
            raise ValueError(problem)
        return data


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_ITEMS:
        raise ValueError(f"at most {MAX_METADATA_ITEMS} metadata entries")
    for key, item in value.items():
        if not 1 <= len(key) <= 64 or not all(c.isalnum() or c in "_.:-" for c in key) or not key.isascii():
            raise ValueError(f"metadata key {key!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")
        if len(item) > MAX_METADATA_CHARS or any(ord(c) < 32 for c in item):
            raise ValueError(f"metadata value of {key!r}: at most {MAX_METADATA_CHARS} characters, no control ones")
    return value


class LimitsRequest(RequestModel):
    """Resource limits of a new sandbox (see corral.Limits); omitted ones take the defaults."""

    timeout: Number | None = Field(default=None, gt=0, le=24 * 3600, description="default seconds per run")
    memory_mb: Integer | None = Field(default=None, ge=64, le=64 * 1024)
    pids: Integer | None = Field(default=None, ge=16, le=4096)
    cpus: Number | None = Field(default=None, gt=0, le=64)
    disk_mb: Integer | None = Field(default=None, ge=1, le=64 * 1024)


class CreateSandbox(RequestModel):
    """Create a sandbox from a template."""

    template: str = Field(default="python", min_length=1, max_length=128, description="template name or id")
    timeout: Number = Field(default=DEFAULT_TTL_S, gt=0, le=MAX_TTL_S,
                           description="time to live in seconds; the sandbox is killed when it passes")
    metadata: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    limits: LimitsRequest = Field(default_factory=LimitsRequest)

    _metadata = field_validator("metadata")(_check_metadata)
    _env = field_validator("env")(check_env)


class TemplateStep(RequestModel):
    """One build step: exactly one of run (a shell command), files, packages or env."""

    run: str | None = Field(default=None, min_length=1, max_length=64 * 1024)
    files: dict[str, str] | None = Field(default=None, description="path (relative to home) -> text content")
    packages: list[str] | None = Field(default=None, min_length=1, max_length=100,
                                       description="pinned packages for the base's installer (name==1.2.3)")
    env: dict[str, str] | None = None

    _env = field_validator("env")(lambda value: None if value is None else check_env(value))

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for path, content in (value or {}).items():
            problem = wire.path_problem(path)
            if problem:
                raise ValueError(f"file {path!r}: {problem}")
            if len(content.encode("utf-8", "surrogatepass")) > wire.MAX_FILE_BYTES:
                raise ValueError(f"file {path!r} is over {wire.MAX_FILE_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TemplateStep:
        given = [name for name in ("run", "files", "packages", "env") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a step has exactly one of run, files, packages, env; got {given or 'none'}")
        return self


class TemplateDefinition(RequestModel):
    """A template: a base plus build steps, an env, and an optional start_cmd and ready_cmd.

    Its id is the hash of everything but the name, so the same definition builds once.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    base: Language = "python"
    steps: list[TemplateStep] = Field(default_factory=list, max_length=100)
    env: dict[str, str] = Field(default_factory=dict, description="env of the build and of every sandbox")
    start_cmd: str | None = Field(default=None, min_length=1, max_length=64 * 1024,
                                  description="started in the background in each new sandbox")
    ready_cmd: str | None = Field(default=None, min_length=1, max_length=64 * 1024,
                                  description="polled after start_cmd until it exits 0")
    ready_timeout: Number = Field(default=30.0, gt=0, le=600)
    build_timeout: Number = Field(default=600.0, gt=0, le=3600, description="seconds per build step")

    _env = field_validator("env")(check_env)


class TemplateInfo(BaseModel):
    """A built template."""

    id: str
    name: str
    base: Language
    file_count: int
    size_bytes: int
    build_seconds: float
    created_at: float
    cached: bool = Field(default=False, description="True when an identical definition was already built")


class SetTimeout(RequestModel):
    """Give a running sandbox ``timeout`` more seconds to live, counted from now."""

    timeout: Number = Field(gt=0, le=MAX_TTL_S)


class ResumeSnapshot(RequestModel):
    """Start a new sandbox that continues a snapshot."""

    timeout: Number = Field(default=DEFAULT_TTL_S, gt=0, le=MAX_TTL_S)
    metadata: dict[str, str] | None = Field(default=None, description="replaces the snapshot's metadata if given")

    _metadata = field_validator("metadata")(lambda value: None if value is None else _check_metadata(value))


class RunRequest(RequestModel):
    """Run code in the sandbox's session interpreter (state is kept between runs)."""

    code: str = Field(max_length=1024 * 1024)
    language: Language | None = None
    timeout: Number | None = Field(default=None, gt=0, le=24 * 3600)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(default=None, min_length=1, max_length=4096)
    stream: Flag = Field(default=False, description="answer with NDJSON events instead of one JSON result")

    _env = field_validator("env")(check_env)


class RenameRequest(RequestModel):
    """Move a file or directory inside a sandbox."""

    source: str = Field(min_length=1, max_length=4096)
    destination: str = Field(min_length=1, max_length=4096)


class SignalRequest(RequestModel):
    """Signal a process of a sandbox."""

    signal: Literal["SIGKILL", "SIGTERM", "SIGINT", "SIGHUP"] = "SIGKILL"


class SignalAnswer(BaseModel):
    """Whether the process was running (and got the signal)."""

    signalled: bool


class CommandRequest(RequestModel):
    """Run a shell command in a fresh process."""

    cmd: str = Field(min_length=1, max_length=1024 * 1024)
    cwd: str | None = Field(default=None, min_length=1, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    stdin: str | None = Field(default=None, max_length=8 * 1024 * 1024)
    timeout: Number | None = Field(default=None, gt=0, le=24 * 3600)
    background: Flag = False
    #: With ``background``: give the process a stdin pipe (written with ``/processes/{pid}/stdin``).
    stdin_pipe: Flag = False
    stream: Flag = False

    _env = field_validator("env")(check_env)


class SandboxInfo(BaseModel):
    """A sandbox as the API shows it."""

    id: str
    state: SandboxState
    template: str
    language: Language
    metadata: dict[str, str]
    created_at: float
    updated_at: float
    expires_at: float | None
    snapshot_id: str | None = Field(default=None, description="the snapshot a pause left, if paused")
    resumed_from: str | None = Field(default=None, description="the snapshot this sandbox continues")


class CreatedSandbox(SandboxInfo):
    """A new sandbox, with the token that grants its data plane (shown only here)."""

    access_token: str


class SnapshotInfo(BaseModel):
    """A continuation snapshot left by a pause."""

    id: str
    sandbox_id: str
    template: str
    metadata: dict[str, str]
    file_count: int
    size_bytes: int
    memory: bool = Field(description="True when the interpreter's memory was captured too")
    created_at: float


class LogEvent(BaseModel):
    """One recorded lifecycle event of a sandbox."""

    seq: int
    sandbox_id: str
    at: float
    kind: str
    state: SandboxState
    message: str


class Health(BaseModel):
    """The server is up; what it can run."""

    status: Literal["ok"] = "ok"
    version: str
    isolation: list[str]
    sandboxes_running: int


class ListedFile(FileEntry):
    """A directory entry as the API shows it: ``name`` is always valid UTF-8.

    A name that is not valid UTF-8 (user code can create any bytes) is shown with
    U+FFFD in place of each undecodable byte, and ``name_bytes`` holds its exact
    bytes, base64-encoded; it is null for every other name.
    """

    name_bytes: str | None = Field(default=None, description="base64 of the raw name when it is not valid UTF-8")

    def entry(self) -> FileEntry:
        """The Python API's entry: a name that is not UTF-8 comes back in Python's surrogateescape form."""
        fields = self.model_dump(exclude={"name_bytes"})
        if self.name_bytes is not None:
            fields["name"] = base64.b64decode(self.name_bytes).decode("utf-8", "surrogateescape")
        return FileEntry(**fields)


def listed_file(entry: FileEntry) -> ListedFile:
    """The API view of a directory entry (see :class:`ListedFile`)."""
    if SURROGATE.search(entry.name) is None:
        return ListedFile(**entry.model_dump())
    try:  # the agent's names are surrogateescape-decoded bytes
        raw = entry.name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte maps to: only a hostile agent sends those
        raw = entry.name.encode("utf-8", "surrogatepass")
    return ListedFile(**{**entry.model_dump(), "name": raw.decode("utf-8", "replace"),
                         "name_bytes": base64.b64encode(raw).decode()})


class ErrorDetail(BaseModel):
    """What went wrong: ``type`` names the corral error class, ``message`` says what to fix."""

    type: str
    message: str
    code: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer has this body."""

    error: ErrorDetail
