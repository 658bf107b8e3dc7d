"""The HTTP API's request and response bodies (and what the service returns).

Requests forbid unknown fields, so a typo is a 422 naming the field, not a
silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from corral.models import Language, check_env
from corral.protocol import wire
from corral.server.lifecycle import SandboxState

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


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_ITEMS:
        raise ValueError(f"at most {MAX_METADATA_ITEMS} metadata entries")
    for key, item in value.items():
        if not 1 <= len(key) <= 64 or not all(c.isalnum() or c in "_.:-" for c in key) or not key.isascii():
            raise ValueError(f"metadata key {key!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")
        if len(item) > MAX_METADATA_CHARS or any(ord(c) < 32 for c in item):
            raise ValueError(f"metadata value of {key!r}: at most {MAX_METADATA_CHARS} characters, no control ones")
    return value


class LimitsRequest(_Request):
    """Resource limits of a new sandbox (see corral.Limits); omitted ones take the defaults."""

    timeout: Number | None = Field(default=None, gt=0, le=24 * 3600, description="default seconds per run")
    memory_mb: Integer | None = Field(default=None, ge=64, le=64 * 1024)
    pids: Integer | None = Field(default=None, ge=16, le=4096)
    cpus: Number | None = Field(default=None, gt=0, le=64)
    disk_mb: Integer | None = Field(default=None, ge=1, le=64 * 1024)


class CreateSandbox(_Request):
    """Create a sandbox from a template."""

    template: str = Field(default="python", min_length=1, max_length=128, description="template name or id")
    timeout: Number = Field(default=DEFAULT_TTL_S, gt=0, le=MAX_TTL_S,
                           description="time to live in seconds; the sandbox is killed when it passes")
    metadata: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    limits: LimitsRequest = Field(default_factory=LimitsRequest)

    _metadata = field_validator("metadata")(_check_metadata)
    _env = field_validator("env")(check_env)


class TemplateStep(_Request):
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


class TemplateDefinition(_Request):
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


class SetTimeout(_Request):
    """Give a running sandbox ``timeout`` more seconds to live, counted from now."""

    timeout: Number = Field(gt=0, le=MAX_TTL_S)


class ResumeSnapshot(_Request):
    """Start a new sandbox that continues a snapshot."""

    timeout: Number = Field(default=DEFAULT_TTL_S, gt=0, le=MAX_TTL_S)
    metadata: dict[str, str] | None = Field(default=None, description="replaces the snapshot's metadata if given")

    _metadata = field_validator("metadata")(lambda value: None if value is None else _check_metadata(value))


class RunRequest(_Request):
    """Run code in the sandbox's session interpreter (state is kept between runs)."""

    code: str = Field(max_length=1024 * 1024)
    language: Language | None = None
    timeout: Number | None = Field(default=None, gt=0, le=24 * 3600)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(default=None, min_length=1, max_length=4096)
    stream: Flag = Field(default=False, description="answer with NDJSON events instead of one JSON result")

    _env = field_validator("env")(check_env)


class CommandRequest(_Request):
    """Run a shell command in a fresh process."""

    cmd: str = Field(min_length=1, max_length=1024 * 1024)
    cwd: str | None = Field(default=None, min_length=1, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    stdin: str | None = Field(default=None, max_length=8 * 1024 * 1024)
    timeout: Number | None = Field(default=None, gt=0, le=24 * 3600)
    background: Flag = False
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


class ErrorDetail(BaseModel):
    """What went wrong: ``type`` names the corral error class, ``message`` says what to fix."""

    type: str
    message: str
    code: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer has this body."""

    error: ErrorDetail
