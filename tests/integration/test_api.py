"""The Python API against real process sandboxes."""

from __future__ import annotations

import asyncio
import time

import pytest

import corral

pytestmark = pytest.mark.sandbox


def test_run_python_defaults(isolation_level):
    result = corral.run("print(1)")
    assert (result.stdout, result.stderr, result.exit_code, result.timed_out) == ("1\n", "", 0, False)
    assert result.isolation == isolation_level and result.language == "python"
    assert result.timing.total_ms >= result.timing.execute_ms > 0
    assert result.timing.boot_ms > 0 and not result.warm_pool_hit
    assert result.cpu_time_ms is not None and result.memory_peak_mb is not None


def test_run_javascript_and_shell():
    assert corral.run("console.log(2)", "javascript").stdout == "2\n"
    assert corral.run("echo $((1+2)) | tr 3 x", "shell").stdout == "x\n"


def test_exit_codes_errors_and_stdin():
    assert corral.run("import sys; sys.exit(7)").exit_code == 7
    failed = corral.run("1/0")
    assert failed.exit_code == 1 and "ZeroDivisionError" in failed.stderr
    assert 'File "<string>", line 1' in failed.stderr
    assert corral.run("import sys; print(sys.stdin.read().upper())", stdin=b"abc").stdout == "ABC\n"
    assert corral.run("exit 3", "shell").exit_code == 3
    assert corral.run("process.exit(5)", "javascript").exit_code == 5


def test_env_reaches_the_program():
    result = corral.run("import os; print(os.environ['NAME'], os.environ['HOME'])", env={"NAME": "value"})
    assert result.stdout == "value /home/user\n"


def test_fresh_interpreter_state_each_one_shot_run():
    corral.run("import builtins; builtins.leak = 1")
    assert "NameError" in corral.run("leak").stderr


def test_session_keeps_state_streams_and_runs_commands():
    seen = []
    with corral.Sandbox(language="python", memory_mb=256, timeout=10) as sandbox:
        assert sandbox.run("x = 41").exit_code == 0
        assert sandbox.run("print(x + 1)").stdout == "42\n"
        result = sandbox.run("for i in range(3): print(i)", on_stdout=seen.append)
        assert "".join(seen) == result.stdout == "0\n1\n2\n"
        events = list(sandbox.stream("print('a'); import sys; print('b', file=sys.stderr)"))
        assert isinstance(events[-1], corral.ExecutionResult)
        streamed = {(e.stream, e.data) for e in events[:-1]}
        assert ("stdout", "a\n") in streamed and ("stderr", "b\n") in streamed
        sandbox.files.write("data/in.txt", b"hello")
        assert sandbox.files.read("data/in.txt") == b"hello"
        assert [entry.name for entry in sandbox.files.list("data")] == ["in.txt"]
        out = sandbox.commands.run("ls -la data; echo $A; cat", cwd="/home/user", env={"A": "1"}, stdin=b"in", timeout=5)
        assert out.exit_code == 0 and "in.txt" in out.stdout and "1\nin" in out.stdout
        assert sandbox.run("print(open('data/in.txt').read())").stdout == "hello\n"
    assert sandbox.closed
    with pytest.raises(corral.SandboxClosedError):
        sandbox.run("print(1)")


def test_session_timeout_resets_state_and_says_so():
    with corral.Sandbox(timeout=10) as sandbox:
        sandbox.run("x = 1")
        started = time.monotonic()
        result = sandbox.run("import time; time.sleep(30)", timeout=0.5)
        assert result.timed_out and result.session_reset and time.monotonic() - started < 5
        after = sandbox.run("print(x)")
        assert "NameError" in after.stderr
        crashed = sandbox.run("import os; os._exit(3)")
        assert crashed.exit_code == 3 and crashed.session_reset


def test_session_system_exit_keeps_state():
    with corral.Sandbox() as sandbox:
        sandbox.run("y = 5")
        assert sandbox.run("import sys; sys.exit(4)").exit_code == 4
        assert sandbox.run("print(y)").stdout == "5\n"


def test_files_errors_are_typed():
    with corral.Sandbox() as sandbox:
        with pytest.raises(corral.FileOperationError) as missing:
            sandbox.files.read("nope.txt")
        assert missing.value.code == "not_found"
        with pytest.raises(corral.FileOperationError) as read_only:
            sandbox.files.write("/usr/evil", b"x")
        assert read_only.value.code in ("read_only", "permission")
        sandbox.files.write("d/a.txt", "text")
        with pytest.raises(corral.FileOperationError):
            sandbox.files.remove("d")
        sandbox.commands.run("mkdir -p d/sub/deeper && chmod 500 d/sub && chmod 000 d/sub/deeper")
        sandbox.files.remove("d", recursive=True)
        assert sandbox.files.list(".") == []


def test_timeout_kills_the_whole_tree():
    started = time.monotonic()
    result = corral.run("sleep 60 & sleep 60 & wait", "shell", timeout=1)
    assert result.timed_out and result.exit_code == 137
    assert time.monotonic() - started < 10


def test_memory_limit_gives_an_out_of_memory_result():
    result = corral.run("x = bytearray(600 * 1024 * 1024); print('survived')", memory_mb=128, timeout=20)
    assert "survived" not in result.stdout
    assert result.exit_code != 0
    assert result.oom_killed or "MemoryError" in result.stderr


def test_output_is_truncated_with_a_flag():
    result = corral.run("import sys; sys.stdout.write('x' * 3_000_000); sys.stderr.write('y' * 300_000)")
    assert result.stdout_truncated and len(result.stdout) == 1024 * 1024
    assert result.stderr_truncated and len(result.stderr) == 100 * 1024


def test_unknown_isolation_and_bad_input_fail_before_running():
    with pytest.raises(corral.InvalidInputError, match="isolation"):
        corral.run("print(1)", isolation="nonsense")
    with pytest.raises(corral.InvalidInputError, match="language"):
        corral.run("print(1)", "cobol")
    with pytest.raises(corral.InvalidInputError, match="LD_PRELOAD"):
        corral.run("print(1)", env={"LD_PRELOAD": "/x.so"})


def test_pool_serves_warm_fresh_runs():
    with corral.Pool(size=2) as pool:
        first = pool.run("import builtins; builtins.leak = 1; print('a')")
        second = pool.run("print(hasattr(__import__('builtins'), 'leak'))")
        assert first.warm_pool_hit and second.warm_pool_hit
        assert second.stdout == "False\n"
        assert second.timing.setup_ms == 0 and second.timing.boot_ms == 0
        with pool.sandbox() as sandbox:
            sandbox.run("z = 3")
            assert sandbox.run("print(z)").stdout == "3\n"
        stats = pool.statistics()
        assert stats["hits"] >= 2 and stats["hits"] + stats["misses"] == 3


def test_pool_size_option_on_run():
    results = []
    for _ in range(3):
        results.append(corral.run("print(7)", pool_size=1))
        time.sleep(0.3)  # the shared pool refills in the background
    assert all(r.stdout == "7\n" for r in results)
    assert any(r.warm_pool_hit for r in results[1:])


async def test_async_sandbox_javascript_session():
    async with corral.AsyncSandbox(language="javascript") as sandbox:
        await sandbox.run("let y = 2")
        assert (await sandbox.run("console.log(y * 21)")).stdout == "42\n"
        assert (await sandbox.run("await1 = Promise.resolve(3).then(v => console.log(v))")).stdout == "3\n"
        failed = await sandbox.run("throw new Error('boom')")
        assert failed.exit_code == 1 and "boom" in failed.stderr
        assert (await sandbox.run("console.log(typeof y)")).stdout == "number\n"


async def test_concurrent_async_runs():
    results = await asyncio.gather(*(corral.arun(f"print({i})") for i in range(6)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]


async def test_cancelling_a_run_kills_it():
    async with corral.AsyncSandbox() as sandbox:
        task = asyncio.ensure_future(sandbox.commands.run("sleep 30; echo late > /home/user/late"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        listing = await sandbox.commands.run("ls /home/user; ps -e -o comm= 2>/dev/null || true")
        assert "late" not in listing.stdout and "sleep" not in listing.stdout


async def test_cancelled_session_block_reports_the_reset_next_time():
    async with corral.AsyncSandbox() as sandbox:
        await sandbox.run("x = 1")
        task = asyncio.ensure_future(sandbox.run("import time; time.sleep(30)"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await sandbox.run("print('x' in globals())")
        assert after.stdout == "False\n" and after.session_reset
        assert not (await sandbox.run("pass")).session_reset


def test_filling_every_file_system_does_not_starve_the_agent():
    with corral.Sandbox(memory_mb=128) as sandbox:
        fill = sandbox.commands.run(
            "for d in /home/user /tmp /dev/shm; do head -c 1000M /dev/zero > $d/fill; done; echo done", timeout=20
        )
        assert "No space left" in fill.stderr
        hog = sandbox.run("x = bytearray(200 * 1024 * 1024)")
        assert hog.oom_killed
        assert sandbox.run("print('agent survived')").stdout == "agent survived\n"


def test_signals_to_the_agent_do_not_break_the_sandbox():
    with corral.Sandbox() as sandbox:
        for sig in ("INT", "TERM", "HUP", "USR1"):
            assert sandbox.commands.run(f"kill -{sig} 1; echo sent").stdout == "sent\n"
        assert sandbox.run("print('alive')").stdout == "alive\n"


def test_user_code_is_what_the_oom_killer_picks():
    with corral.Sandbox(memory_mb=128, disk_mb=16) as sandbox:
        result = sandbox.run("x = bytearray(400 * 1024 * 1024)")
        assert result.oom_killed and result.session_reset
        assert sandbox.run("print('agent survived')").stdout == "agent survived\n"


def test_lone_surrogates_are_refused():
    with pytest.raises(corral.InvalidInputError):
        corral.run("print('\udc80')")
    with pytest.raises(corral.InvalidInputError):
        corral.run("print(1)", env={"A": "\udc80"})


def test_modules_written_to_home_are_importable():
    with corral.Sandbox() as sandbox:
        sandbox.files.write("helper.py", "VALUE = 9\n")
        assert sandbox.run("import helper; print(helper.VALUE)").stdout == "9\n"
        assert sandbox.commands.run("python3 -c 'import helper; print(helper.VALUE)'").stdout == "9\n"


def test_device_files_stay_usable_under_landlock():
    result = corral.run("echo hidden > /dev/null && head -c 4 /dev/zero | wc -c && echo ok > /dev/shm/x && cat /dev/shm/x",
                        "shell")
    assert result.stdout == "4\nok\n" and result.stderr == ""


def test_prestarted_interpreter_behaves_like_python_c():
    with corral.Pool(size=1, env={"NAME": "pooled"}) as pool:
        pool.run("pass")  # the pool keeps a pre-forked interpreter per sandbox
        result = pool.run("import os, sys; print(sys.stdin.read(), os.getcwd(), os.environ['NAME'], sys.argv)",
                          stdin=b"zz")
        assert result.stdout == "zz /home/user pooled ['-c']\n"
        failed = pool.run("def f():\n    raise KeyError('k')\nf()")
        assert failed.exit_code == 1 and failed.stderr.startswith("Traceback") and "KeyError: 'k'" in failed.stderr
        assert "corral" not in failed.stderr  # no agent frames in the user's traceback


def test_recycled_pool_leaves_nothing_of_the_previous_run():
    leave_traces = """
import os, subprocess, ctypes
open('/home/user/home-trace', 'w').write('x')
open('/tmp/tmp-trace', 'w').write('x')
open('/dev/shm/shm-trace', 'w').write('x')
os.makedirs('/home/user/locked/inner'); os.chmod('/home/user/locked', 0)
subprocess.Popen(['sleep', '300'], start_new_session=True)
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget(0, 4096, 0o1000 | 0o666) >= 0)
import builtins; builtins.leak = 1
"""
    look = """
import os, builtins
def user_process(pid):  # a microVM guest also lists its kernel's threads
    stat = open(f'/proc/{pid}/stat').read()
    return not int(stat[stat.rfind(')') + 2:].split()[6]) & 0x200000
print(sorted(os.listdir('/home/user')), sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')))
print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and user_process(p)), hasattr(builtins, 'leak'))
print(open('/proc/sysvipc/shm').read().count('\\n'))
"""
    with corral.Pool(size=1, recycle=True) as pool:
        first = pool.run(leave_traces)
        assert first.stdout == "True\n", first
        deadline = time.monotonic() + 5
        while pool.statistics()["recycled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.statistics()["recycled"] == 1
        second = pool.run(look)
        assert second.warm_pool_hit and pool.statistics()["misses"] == 0
        homes, pids, segments = second.stdout.splitlines()
        assert homes == "[] [] []"
        assert pids.endswith("False") and len(eval(pids.rsplit(" ", 1)[0])) <= 3  # agent, this run, the spare
        assert segments == "1"  # only the header line


def test_message_queues_are_denied():
    result = corral.run("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
                        "print(libc.mq_open(b'/q', 0o100 | 2, 0o600, None), ctypes.get_errno())")
    # EPERM from the process sandbox's seccomp filter, EACCES from Landlock in a microVM guest
    assert result.stdout in ("-1 1\n", "-1 13\n")


def test_prestarted_node_behaves_like_node_e():
    with corral.Pool(size=1, language="javascript") as pool:
        pool.run("0")  # the sandbox keeps a node process started ahead for the next run
        result = pool.run("let d = ''; process.stdin.on('data', c => d += c).on('end', () => "
                          "console.log(d.toUpperCase(), process.cwd(), require('path').basename(__filename)))",
                          stdin=b"abc")
        assert result.stdout == "ABC /home/user [eval]\n" and result.exit_code == 0
        failed = pool.run("const x = 1;\nthrow new Error('boom')")
        assert failed.exit_code == 1 and "Error: boom" in failed.stderr and "[eval]:2" in failed.stderr
        assert pool.run("setTimeout(() => console.log('later'), 20); process.exitCode = 3").stdout == "later\n"
        assert pool.run("process.exit(4)").exit_code == 4


def test_auto_follows_the_pinned_level(isolation_level):
    assert corral.run("print(1)").isolation == isolation_level


def test_sandboxes_of_a_killed_corral_are_cleaned_up_by_the_next(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    script = ("import corral, time\nsb = corral.Sandbox().start()\nprint(sb._async._lease.instance.service_dir.name,"
              " flush=True)\ntime.sleep(60)\n")
    crashing = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    name = crashing.stdout.readline().strip()
    assert name.startswith("sb-")
    os.kill(crashing.pid, signal.SIGKILL)
    crashing.wait()
    crashing.stdout.close()
    from corral.host.cgroups import Cgroup

    assert Cgroup.existing(name) is not None  # nobody tore the sandbox down
    cleanup = subprocess.run([sys.executable, "-c", "import corral; print(corral.run('print(1)').stdout)"],
                             capture_output=True, text=True, timeout=60)
    assert cleanup.stdout == "1\n\n", cleanup.stderr
    assert Cgroup.existing(name) is None
    from corral.host.data_dir import data_dir

    assert not (data_dir() / "sandboxes" / name).exists()


def test_a_pool_that_cannot_work_fails_fast():
    started = time.monotonic()
    with pytest.raises(corral.InvalidInputError, match="isolation"):
        with corral.Pool(size=1, isolation="nonsense"):
            pass
    assert time.monotonic() - started < 10


def test_a_session_timeout_spares_background_commands():
    with corral.Sandbox() as sandbox:
        sandbox.run("x = 1")
        sandbox.commands.start("sleep 300")
        assert sandbox.run("import time; time.sleep(30)", timeout=0.5).timed_out
        assert "sleep 300" in sandbox.commands.run("ps -eo args").stdout


async def test_closing_under_a_running_operation_says_closed():
    sandbox = await corral.AsyncSandbox().start()
    task = asyncio.ensure_future(sandbox.run("import time; time.sleep(30)"))
    await asyncio.sleep(0.3)
    await sandbox.close()
    with pytest.raises(corral.SandboxClosedError):
        await task
    with pytest.raises(corral.SandboxClosedError):
        await sandbox.install(["corral-demo==1.0.0"])


def test_asyncio_run_returning_right_after_close_leaves_no_sandbox():
    import subprocess
    import sys

    script = (
        "import asyncio, corral\n"
        "async def main():\n"
        "    async with corral.AsyncSandbox() as sandbox:\n"
        "        await sandbox.run('pass')\n"
        "        return sandbox._lease.instance.service_dir.name\n"
        "name = asyncio.run(main())\n"
        "from corral.host.cgroups import Cgroup\n"
        "print(name, Cgroup.existing(name) is None)\n"
    )
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "True", done.stdout  # torn down before the process even exits
