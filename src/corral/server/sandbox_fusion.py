"""SandboxFusion's ``/run_code``: its request and answer, translated to and from one batch item.

The shapes are SandboxFusion's (its client package, ``sandbox-fusion`` on PyPI, reads
them): a request names ``code``, ``language``, ``compile_timeout``, ``run_timeout``,
``memory_limit_MB``, ``stdin``, ``files`` (name -> base64) and ``fetch_files``; the answer
has ``status`` (``Success`` / ``Failed`` / ``SandboxError``), ``message``,
``compile_result`` and ``run_result`` (``status`` ``Finished`` / ``TimeLimitExceeded`` /
``Error``, ``execution_time`` in seconds, ``return_code``, ``stdout``, ``stderr``) and
``files`` (name -> base64). The mapping and the differences are in docs/sandbox-fusion.md.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.batch.items import BatchItem, parse_item
from corral.batch.verdicts import BatchResult, CompileResult
from corral.contract.schemas import RequestModel
from corral.models import ExecutionResult

#: SandboxFusion's language names that this server runs, and corral's name for each.
LANGUAGES = {"python": "python", "nodejs": "javascript", "bash": "shell", "cpp": "cpp"}


class RunCodeRequest(RequestModel):
    """SandboxFusion's request (fields it has and corral does not use are accepted and ignored, as it does)."""

    model_config = ConfigDict(extra="ignore")

    code: str
    language: str
    compile_timeout: float = Field(default=10.0, gt=0)
    run_timeout: float = Field(default=10.0, gt=0)
    memory_limit_MB: int | None = None  # noqa: N815 - SandboxFusion's field name
    stdin: str | None = None
    files: dict[str, str | None] = Field(default_factory=dict)
    fetch_files: list[str] = Field(default_factory=list)


class CommandRunResult(BaseModel):
    """One command's outcome, SandboxFusion's shape."""

    status: Literal["Finished", "Error", "TimeLimitExceeded"]
    execution_time: float | None = None
    cpu_time: float | None = None
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


class RunCodeResponse(BaseModel):
    """SandboxFusion's answer."""

    status: Literal["Success", "Failed", "SandboxError"]
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


def sandbox_error(message: str) -> RunCodeResponse:
    """The answer SandboxFusion gives when it cannot run the request (its clients raise on it)."""
    return RunCodeResponse(status="SandboxError", message=message)


def to_item(request: RunCodeRequest) -> BatchItem:
    """The batch item of a request; ValueError says why it cannot run here."""
    language = LANGUAGES.get(request.language)
    if language is None:
        raise ValueError(f"language {request.language!r} is not supported by this server; "
                         f"it runs {', '.join(sorted(LANGUAGES))}")
    files = {}
    for name, content in request.files.items():
        if content is None:
            continue
        try:
            files[name] = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"files[{name!r}] is not valid base64") from None
    memory = request.memory_limit_MB if request.memory_limit_MB is not None and request.memory_limit_MB > 0 else None
    return parse_item({"code": request.code, "language": language, "stdin": request.stdin, "files": files,
                       "fetch_files": request.fetch_files, "timeout": request.run_timeout,
                       "compile_timeout": request.compile_timeout, "memory_mb": memory})


def to_response(result: BatchResult) -> RunCodeResponse:
    """SandboxFusion's answer for a finished item."""
    if result.verdict == "invalid_input" or result.verdict == "sandbox_error":
        return sandbox_error(result.error.message if result.error else result.verdict)
    compiled = _compile_result(result.compile) if result.compile is not None else None
    run = _run_result(result.result) if result.result is not None else None
    files = {name: base64.b64encode(data).decode() for name, data in result.files.items()}
    status = "Success" if result.verdict == "accepted" else "Failed"
    return RunCodeResponse(status=status, compile_result=compiled, run_result=run, files=files)


def _compile_result(compiled: CompileResult) -> CommandRunResult:
    return CommandRunResult(status="TimeLimitExceeded" if compiled.timed_out else "Finished",
                            execution_time=compiled.time_ms / 1000, return_code=compiled.exit_code,
                            stdout=compiled.stdout, stderr=compiled.stderr)


def _run_result(result: ExecutionResult) -> CommandRunResult:
    status = "TimeLimitExceeded" if result.timed_out else "Error" if result.oom_killed else "Finished"
    return CommandRunResult(status=status, execution_time=(result.timing.process_ms or result.timing.execute_ms) / 1000,
                            cpu_time=result.cpu_time_ms / 1000 if result.cpu_time_ms is not None else None,
                            return_code=result.exit_code, stdout=result.stdout, stderr=result.stderr)
