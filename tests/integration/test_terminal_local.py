"""The local sandbox's terminal API (Sandbox.terminal / AsyncSandbox.terminal) on every level."""

from __future__ import annotations

import pytest

import corral

pytestmark = pytest.mark.sandbox


def test_interactive_bash_types_resizes_and_exits(isolation_level):
    with corral.Sandbox() as sandbox:
        with sandbox.terminal(cols=100, rows=30) as terminal:
            assert terminal.pid > 1 and str(terminal.pid) in sandbox.commands.run("ps -eo pid").stdout.split()
            terminal.write("stty size; echo mark-$((6*7))\n")
            assert "mark-42" in terminal.read_until("mark-42")
            terminal.resize(120, 40)
            terminal.write("stty size\n")
            assert "40 120" in terminal.read_until("40 120")
            terminal.write("exit 5\n")
            assert terminal.wait(timeout=20) == 5 and not terminal.running
            with pytest.raises(corral.SandboxClosedError):
                terminal.write("late\n")


@pytest.mark.levels("process")
def test_a_command_terminal_kill_and_errors():
    with corral.Sandbox() as sandbox:
        with sandbox.terminal(command="tty; echo $TERM $X", env={"X": "y"}, cwd="/tmp") as terminal:
            output = "".join(terminal)
            assert "/dev/pts/" in output and "xterm-256color y" in output
            assert terminal.exit_code == 0
        sleeper = sandbox.terminal(command="echo up; sleep 300")
        assert "up" in sleeper.read_until("up")
        sleeper.kill()
        assert sleeper.wait(timeout=10) == 137 and sleeper.signal == 9
        assert "sleep 300" not in sandbox.commands.run("ps -eo args").stdout
        with pytest.raises(corral.InvalidInputError):
            sandbox.terminal(cols=0)
        with pytest.raises(TimeoutError):
            with sandbox.terminal(command="sleep 300") as slow:
                slow.read_until("never", timeout=0.3)
        quick = sandbox.terminal(command="echo hi")
        assert quick.wait(timeout=10) == 0
        assert "hi" in quick.read() and quick.read() == ""  # all read, and nothing more comes


@pytest.mark.levels("process")
async def test_async_terminal_iterates_until_exit():
    async with corral.AsyncSandbox() as sandbox:
        async with await sandbox.terminal(command="for i in 1 2 3; do echo line$i; done") as terminal:
            text = "".join([piece async for piece in terminal])
            assert "line1" in text and "line3" in text and terminal.exit_code == 0
        terminal = await sandbox.terminal()
        await terminal.write("printf 'a%.0s' {1..5000}; echo; exit\n")
        await terminal.wait(timeout=20)
        assert "a" * 5000 in (await terminal.read())
