"""One run over a channel, against a scripted agent: the request sent, output capped, the result built."""

from __future__ import annotations

import asyncio
import base64

import pytest

from corral import execution
from corral.models import ResourceUsage
from corral.channel import Channel
from corral.errors import InvalidInputError, ProtocolError, TransientError
from corral.execution import Capture, HostDeadlineExceeded, RunOptions, check_run, execute
from corral.models import ExecutionResult, OutputEvent
from corral.protocol import wire
from scripted_agent import ScriptedInstance, exec_done


def options(**changes) -> RunOptions:
    fields = dict(language="python", code="print(1)", session=False, timeout=10.0, env={}, cwd=None, stdin=None,
                  stdout_limit=1000, stderr_limit=1000)
    return RunOptions(**{**fields, **changes})


@pytest.fixture
async def agent():
    instance = await ScriptedInstance.open()
    yield instance
    instance.stop_now()


async def run(agent: ScriptedInstance, run_options: RunOptions, *answer, warm=False):
    """Start the run, answer its request with ``answer`` (frames; ``id`` filled in), return (request, items)."""
    channel = Channel(agent)
    items = asyncio.ensure_future(_collect(execute(channel, run_options, isolation="scripted", warm=warm,
                                                   setup_ms=1.25, boot_ms=2.5)))
    request = await agent.next_request()
    await agent.send(*({**frame, "id": request["id"]} for frame in answer))
    try:
        return request, await items
    finally:
        await channel.close()


async def _collect(iterator):
    return [item async for item in iterator]


async def test_the_request_carries_the_run_and_the_result_what_the_agent_reported(agent):
    request, items = await run(
        agent, options(env={"A": "1"}, cwd="/tmp", stdin=b"in\x00put", session=True),
        {"type": "output", "stream": "stdout", "data": "hi\n"},
        {"type": "output", "stream": "stderr", "data": "warn\n"},
        exec_done(0, exit_code=3, signal=None, spawn_ms=0.5, process_ms=4.0, session_reset=True),
    )
    assert request["type"] == "exec" and request["language"] == "python" and request["code"] == "print(1)"
    assert request["session"] is True and request["env"] == {"A": "1"} and request["cwd"] == "/tmp"
    assert base64.b64decode(request["stdin_b64"]) == b"in\x00put"
    assert request["timeout_ms"] == 10000
    assert items[:2] == [OutputEvent(stream="stdout", data="hi\n"), OutputEvent(stream="stderr", data="warn\n")]
    result = items[-1]
    assert isinstance(result, ExecutionResult) and len(items) == 3
    assert (result.stdout, result.stderr, result.exit_code) == ("hi\n", "warn\n", 3)
    assert result.session_reset and not result.timed_out and not result.oom_killed
    assert result.isolation == "scripted" and result.language == "python" and not result.warm_pool_hit
    timing = result.timing
    assert (timing.setup_ms, timing.boot_ms, timing.spawn_ms, timing.process_ms) == (1.25, 2.5, 0.5, 4.0)
    assert timing.total_ms == pytest.approx(1.25 + 2.5 + timing.execute_ms, abs=0.002)
    assert result.cpu_time_ms is None and result.memory_peak_mb is None  # nothing measured either side


async def test_the_host_caps_output_whatever_the_agent_claims(agent):
    _, items = await run(
        agent, options(stdout_limit=5, stderr_limit=3),
        {"type": "output", "stream": "stdout", "data": "hello world"},
        {"type": "output", "stream": "stdout", "data": "more"},
        {"type": "output", "stream": "stderr", "data": "ab"},
        exec_done(0),  # the agent says nothing was truncated
    )
    result = items[-1]
    assert result.stdout == "hello" and result.stdout_truncated
    assert result.stderr == "ab" and not result.stderr_truncated
    assert [item.data for item in items if isinstance(item, OutputEvent)] == ["hello", "ab"]  # empty chunks dropped


async def test_rich_results_and_the_run_error_are_attached(agent):
    _, items = await run(
        agent, options(session=True),
        {"type": "result", "data": {"text/plain": "42"}, "is_main_result": True},
        {"type": "run_error", "name": "ValueError", "value": "bad", "traceback": "Traceback..."},
        exec_done(0, exit_code=1),
    )
    result = items[-1]
    assert [(r.data, r.is_main_result) for r in result.results] == [({"text/plain": "42"}, True)]
    assert (result.error.name, result.error.value, result.error.traceback) == ("ValueError", "bad", "Traceback...")


async def test_memory_and_cpu_come_from_the_host_cgroup_and_an_oom_kill_is_noted(agent):
    agent.usages = [ResourceUsage(cpu_time_ms=100.0, memory_peak_mb=10.0, oom_kills=0),
                    ResourceUsage(cpu_time_ms=350.5, memory_peak_mb=64.123, oom_kills=1)]
    _, items = await run(agent, options(), {"type": "output", "stream": "stderr", "data": "Killed"},
                         exec_done(0, exit_code=-9, signal=9, cpu_ms=1.0))
    result = items[-1]
    assert result.cpu_time_ms == 250.5  # the run's own share; the agent's cpu_ms is ignored when the host measures
    assert result.memory_peak_mb == 64.12
    assert result.oom_killed and result.signal == 9
    assert result.stderr == "Killed\ncorral: the run was killed for exceeding the sandbox's memory limit (out of memory)\n"


async def test_a_vm_reports_its_own_cpu_and_memory(agent):
    _, items = await run(agent, options(), exec_done(0, cpu_ms=12.3456, memory_peak_mb=7.891, oom_killed=True))
    result = items[-1]
    assert (result.cpu_time_ms, result.memory_peak_mb, result.oom_killed) == (12.346, 7.89, True)


async def test_cpp_is_sent_as_one_shell_script(agent):
    request, items = await run(agent, options(language="cpp", code="int main(){}"), exec_done(0))
    assert request["language"] == "shell"
    assert "int main(){}" in request["code"] and request["code"] != "int main(){}"
    assert items[-1].language == "cpp"


@pytest.mark.parametrize(("code", "error"), [("invalid", InvalidInputError), ("too_large", InvalidInputError),
                                             ("broken", TransientError), ("internal", ProtocolError)])
async def test_an_agent_refusal_becomes_an_error(agent, code, error):
    with pytest.raises(error, match="nope"):
        await run(agent, options(), {"type": "error", "code": code, "message": "nope"})


async def test_an_event_that_does_not_belong_to_a_run_is_a_protocol_error(agent):
    with pytest.raises(ProtocolError, match="unexpected 'ack'"):
        await run(agent, options(), {"type": "ack"})


async def test_the_host_deadline_cancels_a_run_the_agent_never_ends(agent, monkeypatch):
    monkeypatch.setattr(execution, "HOST_GRACE_S", 0.05)
    channel = Channel(agent)
    running = asyncio.ensure_future(_collect(execute(channel, options(timeout=0.05), isolation="scripted",
                                                     warm=False, setup_ms=0, boot_ms=0)))
    request = await agent.next_request()
    with pytest.raises(HostDeadlineExceeded, match="within 0.1 s"):
        await running
    assert await agent.next_request() == {"type": "cancel", "id": request["id"] + 1, "target": request["id"]}
    await channel.close()


def test_capture_cuts_at_the_byte_limit_on_a_character_boundary():
    capture = Capture(4)
    assert capture.add("hé") == "hé"  # 3 bytes
    assert capture.add("éa") == ""  # é needs 2 bytes, 1 left: nothing half-written
    assert capture.truncated and capture.text == "hé"
    assert capture.add("x") == "x"  # the byte that was left still counts
    assert capture.size == 4 and capture.text == "héx"


@pytest.mark.parametrize(("code", "timeout", "stdin", "env", "message"), [
    (b"print(1)", 1, None, None, "code must be a string, got bytes"),
    ("\ud800", 1, None, None, "lone surrogate"),
    ("x" * (wire.MAX_CODE_BYTES + 1), 1, None, None, "the limit is"),
    ("1", 0, None, None, "timeout"),
    ("1", -1, None, None, "timeout"),
    ("1", True, None, None, "timeout"),
    ("1", 86400.5, None, None, "timeout"),
    ("1", "5", None, None, "timeout"),
    ("1", 1, b"x" * (wire.MAX_STDIN_BYTES + 1), None, "stdin"),
    ("1", 1, None, {"LD_PRELOAD": "/x.so"}, "LD_PRELOAD"),
])
def test_check_run_refuses_bad_input(code, timeout, stdin, env, message):
    with pytest.raises(InvalidInputError, match=message):
        check_run(code, timeout, stdin, env)


def test_check_run_accepts_the_limits_themselves():
    check_run("x" * wire.MAX_CODE_BYTES, 86400, b"x" * wire.MAX_STDIN_BYTES, {"A": "1"})
    check_run("", 0.001, None, None)
