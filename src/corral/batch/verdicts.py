"""What a batch gives back: one BatchResult per item, with a verdict per test.

Verdicts, in the order they are decided for one run:

- ``compile_error``: the compile failed or timed out (the compiler's output is in ``compile``);
- ``time_limit_exceeded``: the run hit its timeout;
- ``memory_limit_exceeded``: the run was killed for memory;
- ``runtime_error``: it exited non-zero or by a signal;
- ``wrong_answer``: it exited 0 but its stdout does not match;
- ``accepted``: it exited 0 (and matched, for a test);
- ``sandbox_error``: the sandbox failed (nothing is known about the program); the batch goes on.

An item that fails validation gets ``invalid_input`` and its ``error``, and runs nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.models import ExecutionResult

Verdict = Literal["accepted", "wrong_answer", "compile_error", "time_limit_exceeded", "memory_limit_exceeded",
                  "runtime_error", "sandbox_error"]
ItemVerdict = Literal[Verdict, "invalid_input"]

#: Characters of stdout and stderr kept in a TestResult or a CompileResult (more is cut and flagged).
OUTPUT_CAP = 8192


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class BatchError(_Frozen):
    """Why an item ran nothing (``InvalidInputError``) or what failed (``SandboxCrashedError``...)."""

    type: str
    message: str


class CompileResult(_Frozen):
    """The compile of a compiled item (once per item)."""

    ok: bool
    exit_code: int | None
    timed_out: bool = False
    time_ms: float
    stdout: str = ""
    stderr: str = ""


class TestResult(_Frozen):
    """One test's verdict, with what the run printed (capped at OUTPUT_CAP characters per stream)."""

    __test__ = False  # not a pytest class

    verdict: Verdict
    time_ms: float
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: BatchError | None = None


class BatchResult(_Frozen):
    """The outcome of one item: its index in the input and its overall verdict.

    ``verdict`` is ``accepted`` when every test (or the single run) was, otherwise the first
    test's verdict that was not. ``result`` is the single run of an item without tests;
    ``files`` what ``fetch_files`` read back (paths that do not exist are left out; base64 in JSON).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, ser_json_bytes="base64",
                              val_json_bytes="base64")

    index: int
    verdict: ItemVerdict
    error: BatchError | None = None
    compile: CompileResult | None = None
    result: ExecutionResult | None = None
    tests: list[TestResult] = Field(default_factory=list)
    files: dict[str, bytes] = Field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """True when the verdict is ``accepted``."""
        return self.verdict == "accepted"


def run_verdict(result: ExecutionResult, matched: bool = True) -> Verdict:
    """The verdict of one finished run whose stdout did (or did not) match."""
    if result.timed_out:
        return "time_limit_exceeded"
    if result.oom_killed:
        return "memory_limit_exceeded"
    if result.exit_code != 0 or result.signal is not None or result.cancelled:
        return "runtime_error"
    return "accepted" if matched else "wrong_answer"


def capped(text: str) -> tuple[str, bool]:
    """``text`` cut at OUTPUT_CAP characters, and whether it was cut."""
    return (text[:OUTPUT_CAP], True) if len(text) > OUTPUT_CAP else (text, False)


def overall(verdicts: list[Verdict]) -> Verdict:
    """The item's verdict from its tests' (first non-accepted one, else accepted)."""
    return next((verdict for verdict in verdicts if verdict != "accepted"), "accepted")
