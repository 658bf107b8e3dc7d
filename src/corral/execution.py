"""One run over a channel: the request, the streamed events, and the ExecutionResult.

The host never trusts the agent's accounting alone: it caps output again,
enforces its own deadline (the run's timeout plus a grace), and reads CPU time,
peak memory and OOM kills from the sandbox's cgroup.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from corral import cpp
from corral.channel import Channel
from corral.errors import InvalidInputError, ProtocolError, TransientError
from corral.models import (
    DisplayResult,
    ExecutionError,
    ExecutionResult,
    Language,
    OutputEvent,
    TimingBreakdown,
    check_env,
)
from corral.protocol import CancelRequest, Error, ExecDone, ExecRequest, Output, Result, RunError, RunFile, wire

#: Extra time the host gives the agent to report a timed-out run before it
#: declares the sandbox broken.
HOST_GRACE_S = 5.0


class HostDeadlineExceeded(Exception):
    """The agent did not end a run within its timeout plus the host's grace."""


@dataclass(frozen=True)
class RunOptions:
    """One run's parameters, already validated."""

    language: Language
    code: str
    session: bool
    timeout: float
    env: dict[str, str]
    cwd: str | None
    stdin: bytes | None
    stdout_limit: int
    stderr_limit: int
    #: The sandbox is thrown away after this run (the agent need not prepare another).
    retire: bool = False
    #: Run in fresh namespaces of its own (per-run isolation; one-shot runs only).
    isolated: bool = False
    #: Files written into the isolated run's fresh home before the code starts: relative path -> bytes.
    files: tuple[tuple[str, bytes], ...] = ()


def check_run(code: object, timeout: float, stdin: bytes | str | None, env: dict | None) -> None:
    """Refuse bad run input before anything is sent."""
    if not isinstance(code, str):
        raise InvalidInputError(f"code must be a string, got {type(code).__name__}")
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInputError("code is not valid UTF-8 text (it contains a lone surrogate)") from None
    if size > wire.MAX_CODE_BYTES:
        raise InvalidInputError(f"code is {size} bytes; the limit is {wire.MAX_CODE_BYTES}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 24 * 3600:
        raise InvalidInputError(f"timeout must be a number of seconds in (0, 86400], got {timeout!r}")
    if stdin is not None and len(stdin) > wire.MAX_STDIN_BYTES:
        raise InvalidInputError(f"stdin is larger than {wire.MAX_STDIN_BYTES} bytes")
    try:
        check_env(env)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


async def execute(
    channel: Channel, options: RunOptions, *, isolation: str, warm: bool, setup_ms: float, boot_ms: float
) -> AsyncIterator[OutputEvent | ExecutionResult]:
    """Run once; yield OutputEvents as they arrive, then the ExecutionResult."""
    usage_before = channel.instance.usage()
    started = time.perf_counter()
    stdin = options.stdin

    sent: list[int] = []

    def build(request_id: int) -> ExecRequest:
        sent.append(request_id)
        compiled = options.language == "cpp"  # one shell script: compile, then run
        return ExecRequest(
            id=request_id,
            language="shell" if compiled else options.language,
            code=cpp.oneshot_script(options.code) if compiled else options.code,
            session=options.session,
            timeout_ms=max(1, int(options.timeout * 1000)),
            env=options.env,
            cwd=options.cwd,
            stdin_b64=base64.b64encode(stdin).decode() if stdin else None,
            stdout_limit=options.stdout_limit,
            stderr_limit=options.stderr_limit,
            retire=options.retire,
            isolated=options.isolated,
            files=[RunFile(path=path, data_b64=base64.b64encode(data).decode()) for path, data in options.files],
        )

    captured = {"stdout": Capture(options.stdout_limit), "stderr": Capture(options.stderr_limit)}
    events = channel.request(build)
    done: ExecDone | None = None
    rich: dict = {"results": [], "error": None}
    deadline = started + options.timeout + HOST_GRACE_S
    try:
        while True:
            remaining = deadline - time.perf_counter()
            try:
                event = await asyncio.wait_for(anext(events), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise HostDeadlineExceeded(
                    f"the agent did not end the run within {options.timeout + HOST_GRACE_S:.1f} s"
                ) from None
            if isinstance(event, Output):
                text = captured[event.stream].add(event.data)
                if text:
                    yield OutputEvent(stream=event.stream, data=text)
            elif isinstance(event, Result):
                if len(rich["results"]) < wire.MAX_RESULTS:
                    rich["results"].append(DisplayResult(data=event.data, is_main_result=event.is_main_result))
            elif isinstance(event, RunError):
                rich["error"] = ExecutionError(name=event.name, value=event.value, traceback=event.traceback)
            elif isinstance(event, ExecDone):
                done = event
                break
            elif isinstance(event, Error):
                if event.code in ("invalid", "too_large"):
                    raise InvalidInputError(event.message)
                if event.code == "broken":  # the sandbox cannot isolate runs any more; nothing ran
                    raise TransientError(f"the sandbox refused the run: {event.message}")
                raise ProtocolError(f"the agent refused the run ({event.code}): {event.message}")
            else:
                raise ProtocolError(f"unexpected {event.type!r} event during a run")
    finally:
        await events.aclose()
        if done is None and sent and not channel.broken:
            # the caller gave up (cancelled, or the host deadline passed): kill the run
            with contextlib.suppress(Exception):
                await asyncio.shield(channel.send_nowait(lambda own_id: CancelRequest(id=own_id, target=sent[0])))
    finished = time.perf_counter()
    result = _result(done, captured, options, channel, usage_before, isolation, warm, setup_ms, boot_ms,
                     (finished - started) * 1000)
    yield result.model_copy(update=rich) if rich["results"] or rich["error"] else result


def _result(done, captured, options, channel, usage_before, isolation, warm, setup_ms, boot_ms, execute_ms):
    usage_after = channel.instance.usage()
    cpu_ms = peak_mb = None
    oom = False
    if usage_after is not None:
        if usage_after.cpu_time_ms is not None and usage_before is not None and usage_before.cpu_time_ms is not None:
            cpu_ms = round(usage_after.cpu_time_ms - usage_before.cpu_time_ms, 3)
        peak_mb = round(usage_after.memory_peak_mb, 2) if usage_after.memory_peak_mb is not None else None
        oom = usage_before is not None and usage_after.oom_kills > usage_before.oom_kills
    oom = oom or done.oom_killed
    if usage_after is None and done.cpu_ms is not None:  # measured inside the sandbox (a VM's own kernel)
        cpu_ms = round(done.cpu_ms, 3)
        peak_mb = round(done.memory_peak_mb, 2) if done.memory_peak_mb is not None else None
    stderr = captured["stderr"].text
    if oom:
        note = "corral: the run was killed for exceeding the sandbox's memory limit (out of memory)\n"
        stderr = stderr + ("" if not stderr or stderr.endswith("\n") else "\n") + note
    return ExecutionResult(
        stdout=captured["stdout"].text,
        stderr=stderr,
        exit_code=done.exit_code,
        signal=done.signal,
        timed_out=done.timed_out,
        cancelled=done.cancelled,
        oom_killed=oom,
        stdout_truncated=done.stdout_truncated or captured["stdout"].truncated,
        stderr_truncated=done.stderr_truncated or captured["stderr"].truncated,
        session_reset=done.session_reset,
        warm_pool_hit=warm,
        cpu_time_ms=cpu_ms,
        memory_peak_mb=peak_mb,
        language=options.language,
        isolation=isolation,
        timing=TimingBreakdown(
            setup_ms=round(setup_ms, 3),
            boot_ms=round(boot_ms, 3),
            execute_ms=round(execute_ms, 3),
            total_ms=round(setup_ms + boot_ms + execute_ms, 3),
            spawn_ms=round(done.spawn_ms, 3),
            process_ms=round(done.process_ms, 3),
        ),
    )


class Capture:
    """Collects one stream up to a byte limit, whatever the agent claims; ``add`` returns what it kept."""

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self.parts: list[str] = []
        self.truncated = False

    def add(self, text: str) -> str:
        room = self.limit - self.size
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > room:
            text = data[: max(room, 0)].decode("utf-8", "ignore")
            data = text.encode()
            self.truncated = True
        self.size += len(data)
        self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.parts)
