"""SandboxFusion's /run_code request and answer, mapped to a batch item and back; scoped API keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from corral.batch.verdicts import BatchError, BatchResult, CompileResult
from corral.models import ExecutionResult, TimingBreakdown
from corral.hosted.database import Database
from corral.hosted.keys import KeyStore
from corral.server.sandbox_fusion import RunCodeRequest, to_item, to_response


def test_request_becomes_an_item():
    request = RunCodeRequest(code="x", language="nodejs", compile_timeout=3, run_timeout=2, memory_limit_MB=512,
                             stdin="in", files={"a/b.txt": base64.b64encode(b"\x00").decode(), "skip": None},
                             fetch_files=["out"], unknown_field=1)
    item = to_item(request)
    assert (item.language, item.timeout, item.compile_timeout, item.memory_mb, item.stdin) == (
        "javascript", 2, 3, 512, "in")
    assert item.files == {"a/b.txt": b"\x00"} and item.fetch_files == ["out"]
    assert to_item(RunCodeRequest(code="x", language="bash", memory_limit_MB=-1)).memory_mb is None
    for bad, problem in [({"language": "go"}, "not supported"), ({"files": {"a": "%%%"}}, "base64"),
                         ({"files": {"/etc/x": "eA=="}}, "relative"), ({"memory_limit_MB": 8}, "memory_mb")]:
        with pytest.raises(ValueError, match=problem):
            to_item(RunCodeRequest(**{"code": "x", "language": "python", **bad}))


def _run(**fields) -> ExecutionResult:
    return ExecutionResult(**{"exit_code": 0, "stdout": "o", "stderr": "e",
                              "timing": TimingBreakdown(process_ms=1500, execute_ms=1600), **fields})


def test_results_become_sandbox_fusion_answers():
    ok = to_response(BatchResult(index=0, verdict="accepted", result=_run(), files={"f": b"\xff"}))
    assert ok.status == "Success" and ok.compile_result is None and ok.files == {"f": "/w=="}
    assert (ok.run_result.status, ok.run_result.execution_time, ok.run_result.return_code) == ("Finished", 1.5, 0)
    slow = to_response(BatchResult(index=0, verdict="time_limit_exceeded", result=_run(exit_code=137, timed_out=True)))
    assert slow.status == "Failed" and slow.run_result.status == "TimeLimitExceeded"
    oom = to_response(BatchResult(index=0, verdict="memory_limit_exceeded", result=_run(exit_code=137, oom_killed=True)))
    assert oom.run_result.status == "Error"
    compiled = CompileResult(ok=False, exit_code=1, time_ms=200, stderr="error: x")
    broken = to_response(BatchResult(index=0, verdict="compile_error", compile=compiled))
    assert broken.status == "Failed" and broken.run_result is None
    assert (broken.compile_result.status, broken.compile_result.return_code) == ("Finished", 1)
    failed = to_response(BatchResult(index=0, verdict="sandbox_error", error=BatchError(type="X", message="boom")))
    assert (failed.status, failed.message) == ("SandboxError", "boom")


@pytest.fixture
def database(tmp_path) -> Iterator[Database]:
    database = Database(tmp_path / "corral.db")
    yield database
    database.close()


def test_scoped_keys_are_good_for_their_scope_only(database, tmp_path):
    keys = KeyStore(database)
    _, full = keys.create("full")
    record, scoped = keys.create("sf", "sandbox-fusion")
    assert record.scope == "sandbox-fusion" and [key.scope for key in keys.list()] == [None, "sandbox-fusion"]
    assert keys.verify(full) is not None and keys.verify(scoped) is None
    assert keys.verify_scoped(scoped, "sandbox-fusion") == record.id
    assert keys.verify_scoped(full, "sandbox-fusion") is not None
    wrong = scoped[:-1] + ("1" if scoped.endswith("0") else "0")
    assert keys.verify_scoped(wrong, "sandbox-fusion") is None
    with pytest.raises(ValueError, match="scope"):
        keys.create("x", "everything")
    assert keys.revoke(record.id) and keys.verify_scoped(scoped, "sandbox-fusion") is None
    other = Database(tmp_path / "other.db")
    try:
        only_scoped = KeyStore(other)
        only_scoped.create("sf", "sandbox-fusion")
        assert not only_scoped.any_active()  # a server with only scoped keys still prints a full key at start
    finally:
        other.close()
