"""Batch items, compare modes, verdicts and the streaming scheduler (no sandboxes)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from corral.batch.compare import outputs_match
from corral.batch.execute import run_item
from corral.batch.items import BatchItem, parse_item
from corral.batch.runner import check_concurrency, stream_results
from corral.batch.verdicts import BatchResult, run_verdict
from corral.errors import InvalidInputError, SandboxCrashedError
from corral.models import ExecutionResult


@pytest.mark.parametrize(("actual", "expected", "mode", "ok"), [
    ("4\n", "4\n", "exact", True),
    ("4", "4\n", "exact", False),
    ("1  2\n\n", "1 2", "whitespace", True),
    ("1 2 3", "1 2", "whitespace", False),
    ("0.3333334 x", "0.3333333 x", "float", True),
    ("0.34 x", "0.3333333 x", "float", False),
    ("1000001", "1000000", "float", True),      # relative tolerance
    ("nan inf", "nan inf", "float", True),
    ("inf", "-inf", "float", False),
    ("yes", "no", "float", False),
    ("1e-7", "0", "float", True),
])
def test_compare_modes(actual, expected, mode, ok):
    assert outputs_match(actual, expected, mode, 1e-6) is ok


def test_items_validate_every_field():
    assert parse_item({"code": "print(1)"}) == BatchItem(code="print(1)")
    for raw, problem in [
        ({"code": "x", "language": "cobol"}, "language"),
        ({"code": "x", "files": {"/etc/passwd": "x"}}, "relative"),
        ({"code": "x", "files": {"a/../b": "x"}}, "'..'"),
        ({"code": "x", "timeout": -1}, "timeout"),
        ({"code": "x", "memory_mb": 1}, "memory_mb"),
        ({"code": "x", "tests": [{"stdin": "1"}]}, "expected"),
        ({"code": "x", "tests": [{"expected": "1"}], "stdin": "2"}, "without tests"),
        ({"code": "x", "compare": "fuzzy"}, "compare"),
        ({"code": "x", "surprise": 1}, "surprise"),
        ({"cod": "x"}, "code"),
        ("print(1)", "dict"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_item(raw)


def test_verdict_of_a_run():
    assert run_verdict(ExecutionResult(exit_code=0)) == "accepted"
    assert run_verdict(ExecutionResult(exit_code=0), matched=False) == "wrong_answer"
    assert run_verdict(ExecutionResult(exit_code=1)) == "runtime_error"
    assert run_verdict(ExecutionResult(exit_code=137, timed_out=True)) == "time_limit_exceeded"
    assert run_verdict(ExecutionResult(exit_code=137, oom_killed=True)) == "memory_limit_exceeded"
    assert run_verdict(ExecutionResult(exit_code=-1, signal=11)) == "runtime_error"


class _BrokenPool:
    """A pool whose sandbox breaks on every run (what a crashed sandbox raises), to check the conversion."""

    size = 1

    async def run(self, *args, **kwargs):
        raise SandboxCrashedError("the agent died")


async def test_a_broken_sandbox_is_a_sandbox_error_result():
    item = BatchItem(code="print(1)", tests=[{"expected": "1\n"}, {"expected": "1\n"}])
    result = await run_item(_BrokenPool(), item, 7)
    assert result.index == 7 and result.verdict == "sandbox_error"
    assert [test.verdict for test in result.tests] == ["sandbox_error", "sandbox_error"]
    assert result.tests[0].error.type == "SandboxCrashedError"
    single = await run_item(_BrokenPool(), BatchItem(code="print(1)"), 0)
    assert single.verdict == "sandbox_error" and single.error.message == "the agent died"


def _tracking_runner(delays: dict[int, float]):
    state = {"running": 0, "peak": 0}

    async def run_one(index, raw):
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        await asyncio.sleep(delays.get(index, 0.001))
        state["running"] -= 1
        return BatchResult(index=index, verdict="accepted")

    return run_one, state


async def test_stream_is_bounded_lazy_and_streams_as_results_complete():
    pulled = []

    def source():
        for index in itertools.count():
            pulled.append(index)
            yield {"code": str(index)}

    run_one, state = _tracking_runner({0: 0.2})
    results = stream_results(source(), run_one, 3, ordered=False)
    seen = []
    async for result in results:
        seen.append(result.index)
        if len(seen) == 10:
            break
    await results.aclose()
    assert state["peak"] == 3
    assert 0 not in seen[:3]  # the slow first item did not hold the others back
    assert len(pulled) <= 10 + 3 + 1  # an endless input is read only as far as needed


async def test_ordered_stream_keeps_input_order_with_a_bounded_window():
    run_one, state = _tracking_runner({0: 0.1, 5: 0.05})
    pulled = []

    def source():
        for index in range(40):
            pulled.append(index)
            yield {}

    seen = []
    async for result in stream_results(source(), run_one, 4, ordered=True):
        if not seen:
            assert len(pulled) <= 2 * 4 + 1  # nothing read far past the slow first item
        seen.append(result.index)
    assert seen == list(range(40)) and state["peak"] <= 4


async def test_async_input_and_cancel_on_close():
    cancelled = []

    async def run_one(index, raw):
        try:
            await asyncio.sleep(10 if index else 0)
        except asyncio.CancelledError:
            cancelled.append(index)
            raise
        return BatchResult(index=index, verdict="accepted")

    async def source():
        for index in range(5):
            yield {"i": index}

    results = stream_results(source(), run_one, 3, ordered=False)
    assert (await anext(results)).index == 0
    await results.aclose()
    assert sorted(cancelled) == [1, 2]  # the two still running; nothing more was started


def test_concurrency_is_checked():
    assert check_concurrency(4) == 4
    for bad in (0, -1, 1000, 2.5, True, "4"):
        with pytest.raises(InvalidInputError):
            check_concurrency(bad)


def test_sync_and_async_batch_calls_have_the_same_parameters():
    import inspect

    import corral

    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert parameters(corral.run_many) == parameters(corral.arun_many)
    assert parameters(corral.Pool.map) == parameters(corral.AsyncPool.map)
