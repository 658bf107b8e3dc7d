"""What only some levels can do, each test gated by the backend capability it needs.

A level without the capability skips with its description (see conftest.py); the tests of
the absence of a capability check that the level refuses cleanly instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

import corral
from corral.backends import registry
from corral.errors import InvalidInputError


@pytest.mark.needs("confinement")
def test_the_hosts_files_and_processes_are_out_of_reach(sandbox: corral.Sandbox, tmp_path: Path):
    token = uuid.uuid4().hex
    (tmp_path / "host-secret.txt").write_text(token)
    result = sandbox.commands.run(f"cat {tmp_path}/host-secret.txt; cat /proc/{os.getpid()}/cmdline; "
                                  f"grep -rs {token} /tmp /home /root; echo done")
    assert token not in result.stdout and "pytest" not in result.stdout and result.stdout.endswith("done\n")


@pytest.mark.needs("network_namespace")
def test_the_hosts_loopback_is_out_of_reach(sandbox: corral.Sandbox):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = ("import socket\ntry:\n"
                f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n    print('connected')\n"
                "except OSError:\n    print('unreachable')")
        assert sandbox.run(code).stdout == "unreachable\n"
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing came in
            listener.accept()


@pytest.mark.needs("pty")
def test_a_terminal_runs_a_program_on_a_pseudo_terminal(sandbox: corral.Sandbox):
    with sandbox.terminal(command="tty; stty size; echo pty-$((6*7))", cols=90, rows=20) as terminal:
        output = "".join(terminal)
    assert "/dev/pts/" in output and "20 90" in output and "pty-42" in output
    assert terminal.exit_code == 0


@pytest.mark.needs("resource_limits")
def test_memory_past_the_limit_is_an_out_of_memory_result_not_a_dead_sandbox(level: str):
    with corral.Sandbox(isolation=level) as sandbox:  # its own: a lost sandbox must not take the module's
        limit = sandbox.spec.limits.memory_mb
        result = sandbox.run(f"x = bytearray({3 * limit} * 1024 * 1024); print('survived')")
        assert "survived" not in result.stdout and result.exit_code != 0
        assert result.oom_killed or "MemoryError" in result.stderr
        assert sandbox.run("print('alive')").stdout == "alive\n"


@pytest.mark.slow
@pytest.mark.needs("resource_limits")
def test_processes_past_the_limit_cannot_start(sandbox: corral.Sandbox):
    limit = sandbox.spec.limits.pids
    code = ("import subprocess\nstarted = []\ntry:\n"
            f"    for _ in range({limit + 8}):\n        started.append(subprocess.Popen(['sleep', '30']))\n"
            "except OSError:\n    pass\nfinally:\n    for process in started:\n        process.kill()\n"
            "        process.wait()\nprint(len(started))")
    result = sandbox.run(code, timeout=120)  # a few hundred process starts are slow under TCG emulation
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) < limit
    assert sandbox.run("print('alive')").stdout == "alive\n"


@pytest.mark.slow
@pytest.mark.needs("per_run_isolation")
def test_an_isolated_run_leaves_nothing_for_the_next(level: str):
    with corral.Pool(size=1, isolation=level) as pool:
        first = pool.run("import builtins, subprocess\nbuiltins.leak = 1\n"
                         "open('left.txt', 'w').write('x'); open('/tmp/left.txt', 'w').write('x')\n"
                         "subprocess.Popen(['sleep', '300'])")
        assert first.ok, first.stderr
        second = pool.run("import os, subprocess\nprint(sorted(os.listdir('.')), os.path.exists('/tmp/left.txt'))\n"
                          "print('sleep 300' in subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True)"
                          ".stdout)\nleak")
    assert second.warm_pool_hit  # the same sandbox served both runs
    assert second.stdout == "[] False\nFalse\n" and "NameError" in second.stderr


def test_without_per_run_isolation_an_isolated_run_is_refused(level: str):
    if "per_run_isolation" in registry.resolve(level).capabilities:
        pytest.skip(f"isolation={level!r} isolates runs: see test_an_isolated_run_leaves_nothing_for_the_next")
    with corral.Pool(size=1, isolation=level) as pool, pytest.raises(InvalidInputError, match="per-run isolation"):
        pool.run("print(1)")


@pytest.mark.slow
@pytest.mark.needs("memory_snapshot")
def test_a_memory_snapshot_continues_where_it_stopped(level: str, tmp_path: Path):
    sandbox = corral.Sandbox(isolation=level).start()
    sandbox.run("counter = 41")
    sandbox.pause_memory(tmp_path / "snapshot")
    assert sandbox.closed
    resumed = corral.Sandbox(isolation=level).start(memory_snapshot=tmp_path / "snapshot")
    try:
        assert resumed.run("print(counter + 1)").stdout == "42\n"
    finally:
        resumed.close()


def test_without_memory_snapshots_pause_memory_is_refused_and_the_sandbox_runs_on(
        sandbox: corral.Sandbox, level: str, tmp_path: Path):
    if registry.resolve(level).captures_memory:
        pytest.skip(f"isolation={level!r} captures memory: see test_a_memory_snapshot_continues_where_it_stopped")
    sandbox.run("still_here = 1")
    with pytest.raises(InvalidInputError):
        sandbox.pause_memory(tmp_path / "snapshot")
    assert sandbox.run("print(still_here)").stdout == "1\n"
