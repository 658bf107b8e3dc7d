"""Process handles: commands.start / connect / list / kill and stdin, on every level (sync and async)."""

from __future__ import annotations

import time

import pytest

import corral
from corral.errors import LimitExceededError, NotFoundError
from corral.protocol import wire

pytestmark = pytest.mark.sandbox


def test_start_streams_output_takes_stdin_and_waits(isolation_level):
    seen = []
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("echo ready; read line; echo got $line; echo oops >&2; exit 3", stdin=True,
                                        on_stdout=seen.append)
        assert handle.pid > 1 and handle.exit_code is None
        listed = sandbox.commands.list()
        assert [p.pid for p in listed] == [handle.pid] and listed[0].stdin and listed[0].cwd == "/home/user"
        handle.send_stdin("abc\n")
        result = handle.wait(timeout=20)
        assert (result.stdout, result.stderr, result.exit_code) == ("ready\ngot abc\n", "oops\n", 3)
        assert "".join(seen) == "ready\ngot abc\n" and handle.exit_code == 3
        assert [(e.stream, e.data) for e in handle if e.stream == "stderr"] == [("stderr", "oops\n")]
        assert sandbox.commands.list() == []
        assert sandbox.files.read_text(handle.log_path) == "ready\ngot abc\noops\n"


@pytest.mark.levels("process")
def test_close_stdin_sends_eof_and_a_process_without_stdin_refuses_input():
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("wc -c", stdin=True)
        handle.send_stdin(b"12345")
        handle.close_stdin()
        assert handle.wait(timeout=10).stdout.strip() == "5"
        quiet = sandbox.commands.start("sleep 30")
        with pytest.raises(corral.InvalidInputError, match="without stdin"):
            quiet.send_stdin("x")
        assert quiet.kill()


@pytest.mark.levels("process")
def test_kill_takes_the_whole_tree_and_reports_the_signal():
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.run("sleep 300 & sleep 301; wait", background=True)
        time.sleep(0.3)
        assert handle.kill()
        result = handle.wait(timeout=10)
        assert (result.exit_code, result.signal) == (137, 9)
        assert "sleep 30" not in sandbox.commands.run("ps -eo args").stdout
        assert sandbox.commands.kill(handle.pid) is False
        term = sandbox.commands.start("trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done")
        for _ in term:
            break
        assert term.kill("SIGTERM") and term.wait(timeout=10).stdout == "up\nbye\n"


@pytest.mark.levels("process")
def test_connect_from_another_handle_with_and_without_replay():
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("echo one; sleep 0.5; echo two")
        for _ in handle:
            break  # "one" has been produced
        replayed = sandbox.commands.connect(handle.pid)
        fresh = sandbox.commands.connect(handle.pid, replay=False)
        assert replayed.wait(timeout=10).stdout == "one\ntwo\n"
        assert fresh.wait(timeout=10).stdout == "two\n"
        assert handle.wait().stdout == "one\ntwo\n"
        with pytest.raises(NotFoundError):
            sandbox.commands.connect(handle.pid)


@pytest.mark.levels("process")
def test_disconnect_leaves_the_process_running_and_timeout_kills_it():
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("echo a; sleep 0.4; echo b", tag="worker")
        assert sandbox.commands.list()[0].tag == "worker"
        handle.disconnect()
        with pytest.raises(corral.InvalidInputError, match="disconnected"):
            handle.wait()
        again = sandbox.commands.connect(handle.pid, replay=True)
        assert again.wait(timeout=10).stdout == "a\nb\n"
        slow = sandbox.commands.start("sleep 60", timeout=0.3)
        result = slow.wait(timeout=10)
        assert result.timed_out and result.exit_code == 137


@pytest.mark.levels("process")
def test_the_number_of_processes_is_capped():
    with corral.Sandbox(pids=512) as sandbox:
        handles = [sandbox.commands.start("sleep 60") for _ in range(wire.MAX_PROCESSES)]
        with pytest.raises(LimitExceededError):
            sandbox.commands.start("sleep 60")
        assert handles[0].kill()
        handles[0].wait(timeout=10)
        sandbox.commands.start("true").wait(timeout=10)


@pytest.mark.levels("process")
async def test_async_handles_iterate_and_a_closed_sandbox_ends_their_wait():
    async with corral.AsyncSandbox() as sandbox:
        handle = await sandbox.commands.start("for i in 1 2 3; do echo $i; sleep 0.05; done")
        assert [event.data async for event in handle] == ["1\n", "2\n", "3\n"]
        assert (await handle.wait()).ok
        forever = await sandbox.commands.start("sleep 300")
        await sandbox.files.write("x", "1")
        with pytest.raises(corral.SandboxClosedError):
            await sandbox.close()
            await forever.wait(timeout=10)


def test_background_server_output_does_not_block_the_sandbox():
    with corral.Sandbox() as sandbox:
        noisy = sandbox.commands.start("yes | head -c 5000000")
        result = noisy.wait(timeout=60)
        assert result.ok and result.stdout_truncated and len(result.stdout) == sandbox.spec.limits.stdout_limit
        assert sandbox.run("print(1)").stdout == "1\n"


def test_a_writer_left_behind_does_not_hang_the_agent(isolation_level):
    """A process whose own shell exits while a child it left keeps writing: its end must not drain forever."""
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("yes & exit 0")
        assert handle.wait(timeout=30).exit_code == 0
        assert sandbox.run("print(6 * 7)", timeout=10).stdout == "42\n"


@pytest.mark.levels("process")
def test_a_failing_callback_ends_the_handle_not_the_process():
    def explode(text):
        raise RuntimeError("callback failed")

    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("echo first; sleep 0.3; echo second; sleep 0.3; echo third",
                                        on_stdout=explode)
        with pytest.raises(RuntimeError, match="callback failed"):
            handle.wait(timeout=10)
        other = sandbox.commands.connect(handle.pid, replay=False)  # the process is still running
        assert "third" in other.wait(timeout=10).stdout


@pytest.mark.levels("process")
def test_kill_spares_other_commands_daemons():
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("sleep 300")
        sandbox.commands.run("setsid sleep 301 > /dev/null 2>&1 < /dev/null &")  # an orphan, started after it
        assert handle.kill() and handle.wait(timeout=10).exit_code == 137
        assert "sleep 301" in sandbox.commands.run("ps -eo args").stdout
