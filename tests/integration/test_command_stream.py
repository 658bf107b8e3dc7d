"""commands.stream: a command's output as it comes, then its result (sync and async, and through a server)."""

from __future__ import annotations

import asyncio
import time

import pytest

import corral
from corral.protocol import wire

pytestmark = pytest.mark.sandbox


def test_stream_yields_each_stream_then_the_result(isolation_level):
    with corral.Sandbox() as sandbox:
        items = list(sandbox.commands.stream("cat; echo $X; pwd; echo oops >&2; exit 4", stdin="in\n",
                                             env={"X": "y"}, cwd="/tmp"))
        *events, result = items
        assert isinstance(result, corral.ExecutionResult) and result.exit_code == 4 and result.language == "shell"
        assert all(isinstance(event, corral.OutputEvent) for event in events)
        assert "".join(e.data for e in events if e.stream == "stdout") == result.stdout == "in\ny\n/tmp\n"
        assert "".join(e.data for e in events if e.stream == "stderr") == result.stderr == "oops\n"


@pytest.mark.levels("process")
async def test_output_comes_before_the_end_and_closing_early_kills_the_command():
    async with corral.AsyncSandbox() as sandbox:
        events = sandbox.commands.stream("echo first; exec sleep 303.25", timeout=60)
        started = time.monotonic()
        first = await anext(events)
        assert (first.stream, first.data) == ("stdout", "first\n") and time.monotonic() - started < 30
        await events.aclose()
        deadline = time.monotonic() + 10
        while "sleep 303.25" in (await sandbox.commands.run("ps -eo args")).stdout:
            assert time.monotonic() < deadline, "the command outlived its closed stream"
            await asyncio.sleep(0.1)
        assert (await sandbox.commands.run("echo after")).stdout == "after\n"  # the sandbox is fine


@pytest.mark.levels("process")
def test_bad_input_is_refused_at_the_call_before_anything_runs():
    with corral.Sandbox() as sandbox:
        for bad in ({"timeout": 0}, {"env": {"A=B": "x"}}, {"stdin": b"x" * (wire.MAX_STDIN_BYTES + 1)},
                    {"cwd": "/tmp/\x00"}):
            with pytest.raises(corral.InvalidInputError):
                sandbox.commands.stream("touch /tmp/ran", **bad)  # raised by the call itself, not iteration
        assert not sandbox.files.exists("/tmp/ran")
        with pytest.raises(corral.SandboxClosedError):
            list(corral.Sandbox().commands.stream("true"))  # never started
