"""One batch item on a pool: its runs, their verdicts, and a BatchResult that never raises.

An item without files and not compiled runs each test with :meth:`AsyncPool.run` (a fresh
process each time). An item with files, files to fetch, or a compile holds one sandbox of
the pool for all its runs: the files are written, the program compiled, then each test is a
fresh process in that sandbox (they share its files).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from corral import cpp
from corral.batch.compare import outputs_match
from corral.batch.items import BatchItem, TestCase
from corral.batch.verdicts import (BatchError, BatchResult, CompileResult, TestResult, Verdict, capped, overall,
                                   run_verdict)
from corral.errors import CorralError, FileOperationError, InvalidInputError
from corral.models import ExecutionResult
from corral.protocol import wire
from corral.lease import LeaseSource
from corral.sandbox import AsyncSandbox


log = logging.getLogger(__name__)


def invalid(index: int, message: str) -> BatchResult:
    """The result of an item that runs nothing because it is invalid."""
    return BatchResult(index=index, verdict="invalid_input", error=BatchError(type="InvalidInputError",
                                                                              message=message))


def _error(exc: BaseException) -> BatchError:
    return BatchError(type=type(exc).__name__, message=str(exc) or type(exc).__name__)


class ItemPool(LeaseSource, Protocol):
    """What a batch item needs from the pool it runs on (``AsyncPool`` is one)."""

    size: int

    async def run(self, code: str, **options: Any) -> ExecutionResult:
        """One isolated run on a warm sandbox."""
        ...


async def run_item(pool: ItemPool, item: BatchItem, index: int) -> BatchResult:
    """Run ``item`` on ``pool``; every failure is data in the result."""
    try:
        if _holds_sandbox(item):
            return await _in_session(pool, item, index)
        return await _on_pool(pool, item, index)
    except InvalidInputError as exc:
        return invalid(index, str(exc))
    except CorralError as exc:
        return BatchResult(index=index, verdict="sandbox_error", error=_error(exc))
    except Exception as exc:  # a bug must not end the batch: report it on this item
        log.exception("batch item %d failed unexpectedly", index)
        return BatchResult(index=index, verdict="sandbox_error", error=_error(exc))


def _holds_sandbox(item: BatchItem) -> bool:
    """True when the item must hold one sandbox for all its runs: files to fetch back or a compile.
    Files to write go with each isolated run on the pool (``files=``)."""
    return bool(item.fetch_files) or item.language == "cpp"


async def _on_pool(pool: ItemPool, item: BatchItem, index: int) -> BatchResult:
    if not item.tests:
        result = await pool.run(item.code, language=item.language, timeout=item.timeout, stdin=item.stdin,
                                files=item.files or None)
        return BatchResult(index=index, verdict=run_verdict(result), result=result)
    tests = []
    for test in item.tests:
        try:
            result = await pool.run(item.code, language=item.language, timeout=item.timeout, stdin=test.stdin,
                                    files=item.files or None)
        except InvalidInputError:
            raise
        except CorralError as exc:
            tests.append(TestResult(verdict="sandbox_error", time_ms=0.0, error=_error(exc)))
            continue
        tests.append(judge(result, test, item))
    return _with_tests(index, tests)


async def _in_session(pool: ItemPool, item: BatchItem, index: int) -> BatchResult:
    async with AsyncSandbox(pool=pool) as sandbox:
        for path, data in item.files.items():
            await sandbox.files.write(path, data)
        compiled = await _compile(sandbox, item) if item.language == "cpp" else None
        if compiled is not None and not compiled.ok:
            tests = [TestResult(verdict="compile_error", time_ms=0.0) for _ in item.tests]
            return BatchResult(index=index, verdict="compile_error", compile=compiled, tests=tests)
        if not item.tests:
            result = await _run_program(sandbox, item, item.stdin)
            files = await _fetch(sandbox, item.fetch_files)
            return BatchResult(index=index, verdict=run_verdict(result), compile=compiled, result=result, files=files)
        tests = []
        for test in item.tests:
            try:
                result = await _run_program(sandbox, item, test.stdin)
            except InvalidInputError:
                raise
            except CorralError as exc:  # the sandbox broke: the remaining tests cannot run in it
                tests.append(TestResult(verdict="sandbox_error", time_ms=0.0, error=_error(exc)))
                break
            tests.append(judge(result, test, item))
        return _with_tests(index, tests, compiled)


async def _compile(sandbox: AsyncSandbox, item: BatchItem) -> CompileResult:
    await sandbox.files.write(cpp.SOURCE, item.code)
    started = time.perf_counter()
    result = await sandbox.commands.run(cpp.COMPILE_COMMAND, cwd=wire.SANDBOX_HOME, timeout=item.compile_timeout)
    stdout, _ = capped(result.stdout)
    stderr, _ = capped(result.stderr)
    if result.timed_out:
        stderr += f"\ncorral: the compile did not finish within {item.compile_timeout:g} s"
    elif result.oom_killed:
        stderr += "\ncorral: the compiler ran out of memory (raise memory_mb)"
    return CompileResult(ok=result.ok, exit_code=result.exit_code, timed_out=result.timed_out,
                         time_ms=(time.perf_counter() - started) * 1000, stdout=stdout, stderr=stderr)


async def _run_program(sandbox: AsyncSandbox, item: BatchItem, stdin: str | bytes | None) -> ExecutionResult:
    """One fresh process of the item in its sandbox."""
    if item.language == "cpp":
        return await sandbox.commands.run(cpp.RUN_COMMAND, cwd=wire.SANDBOX_HOME, stdin=stdin, timeout=item.timeout)
    # a one-shot run on the item's own sandbox, not isolated from it: the files it writes must stay
    # there to be fetched
    return await sandbox.execute(sandbox.run_options(item.code, language=item.language, timeout=item.timeout,
                                                     stdin=stdin))


async def _fetch(sandbox: AsyncSandbox, paths: list[str]) -> dict[str, bytes]:
    files = {}
    for path in paths:
        try:
            files[path] = await sandbox.files.read(path)
        except FileOperationError as exc:
            if exc.code not in ("not_found", "is_directory", "not_directory"):
                raise
    return files


def judge(result: ExecutionResult, test: TestCase, item: BatchItem) -> TestResult:
    """The verdict of one test's run."""
    matched = not result.stdout_truncated and outputs_match(result.stdout, test.expected, item.compare,
                                                            item.tolerance)
    stdout, stdout_cut = capped(result.stdout)
    stderr, stderr_cut = capped(result.stderr)
    return TestResult(verdict=run_verdict(result, matched), time_ms=round(result.timing.process_ms
                                                                          or result.timing.execute_ms, 3),
                      exit_code=result.exit_code, stdout=stdout, stderr=stderr,
                      stdout_truncated=stdout_cut or result.stdout_truncated,
                      stderr_truncated=stderr_cut or result.stderr_truncated)


def _with_tests(index: int, tests: list[TestResult], compiled: CompileResult | None = None) -> BatchResult:
    verdicts: list[Verdict] = [test.verdict for test in tests]
    verdict: Verdict = "sandbox_error" if "sandbox_error" in verdicts else overall(verdicts)
    return BatchResult(index=index, verdict=verdict, compile=compiled, tests=tests)
