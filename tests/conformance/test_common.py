"""What every isolation level must do the same way: runs, limits, sessions, files, commands, env, errors."""

from __future__ import annotations

import time
import uuid

import pytest

import corral
from corral.errors import FileOperationError, InvalidInputError, NotFoundError, SandboxClosedError
from corral.protocol import wire


def _poll(sandbox: corral.Sandbox, path: str, seconds: float = 20.0) -> bytes:
    """The content of ``path`` once it exists and is not empty."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sandbox.files.exists(path) and (content := sandbox.files.read(path)):
            return content
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {seconds} s")


def test_a_run_reports_stdout_stderr_and_exit_code(sandbox: corral.Sandbox, level: str):
    result = sandbox.run("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert (result.stdout, result.stderr, result.exit_code, result.ok) == ("out\n", "err\n", 3, False)
    assert result.isolation == level and result.language == "python"
    failed = sandbox.run("1/0")
    assert failed.exit_code == 1 and "ZeroDivisionError" in failed.stderr and failed.error.name == "ZeroDivisionError"
    assert sandbox.run("console.log(6 * 7)", language="javascript").stdout == "42\n"
    shell = sandbox.commands.run("echo a; echo b >&2; exit 4")
    assert (shell.stdout, shell.stderr, shell.exit_code) == ("a\n", "b\n", 4)
    seen: list[str] = []
    streamed = sandbox.run("for i in range(3): print(i, flush=True)", on_stdout=seen.append)
    assert "".join(seen) == streamed.stdout == "0\n1\n2\n"


def test_a_timeout_kills_the_whole_tree_and_resets_the_session(sandbox: corral.Sandbox):
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a sleep no other process on the host runs
    started = time.monotonic()
    command = sandbox.commands.run(f"sleep {marker} & sleep {marker} & wait", timeout=1)
    assert command.timed_out and command.exit_code == 137 and time.monotonic() - started < 15
    assert f"sleep {marker}" not in sandbox.commands.run("ps -eo args").stdout
    sandbox.run("before_timeout = 1")
    session = sandbox.run("import time; time.sleep(30)", timeout=0.5)
    assert session.timed_out and session.session_reset and not session.ok
    assert "NameError" in sandbox.run("before_timeout").stderr


def test_output_past_the_limit_is_truncated_with_a_flag(sandbox: corral.Sandbox):
    result = sandbox.run("import sys; sys.stdout.write('x' * 3_000_000); sys.stderr.write('y' * 300_000)")
    assert result.stdout_truncated and len(result.stdout) == wire.DEFAULT_STDOUT_LIMIT
    assert result.stderr_truncated and len(result.stderr) == wire.DEFAULT_STDERR_LIMIT
    assert result.exit_code == 0


def test_sessions_keep_state_across_runs(sandbox: corral.Sandbox):
    assert sandbox.run("kept = 41").exit_code == 0
    assert sandbox.run("print(kept + 1)").stdout == "42\n"
    assert sandbox.run("import sys; sys.exit(4)").exit_code == 4  # SystemExit keeps the session
    assert sandbox.run("print(kept)").stdout == "41\n"
    rich = sandbox.run("display({'k': 1})\n6 * 7")
    assert rich.text == "42" and rich.results[0].data["application/json"] == {"k": 1}


def test_files_write_read_list_and_remove(sandbox: corral.Sandbox):
    payload = bytes(range(256))
    assert sandbox.files.write("conformance/data.bin", payload, mode=0o600) == len(payload)
    assert sandbox.files.read("conformance/data.bin") == payload
    sandbox.files.write("conformance/note.txt", "héllo")
    assert sandbox.files.read_text("conformance/note.txt") == "héllo"
    entries = {entry.name: entry for entry in sandbox.files.list("conformance")}
    assert set(entries) == {"data.bin", "note.txt"}
    assert (entries["data.bin"].kind, entries["data.bin"].size, entries["data.bin"].mode & 0o777) == ("file", 256, 0o600)
    assert sandbox.run("print(open('conformance/note.txt').read())").stdout == "héllo\n"  # runs see the files
    with pytest.raises(FileOperationError) as not_empty:
        sandbox.files.remove("conformance")
    assert not_empty.value.code == "exists"
    sandbox.files.remove("conformance/note.txt")
    assert [entry.name for entry in sandbox.files.list("conformance")] == ["data.bin"]
    sandbox.files.remove("conformance", recursive=True)
    assert not sandbox.files.exists("conformance")


def test_file_errors_are_typed(sandbox: corral.Sandbox):
    with pytest.raises(FileOperationError) as missing:
        sandbox.files.read("no-such-file.txt")
    assert missing.value.code == "not_found"
    with pytest.raises(FileOperationError) as missing_dir:
        sandbox.files.list("no-such-dir")
    assert missing_dir.value.code == "not_found"
    with pytest.raises(InvalidInputError):  # docs/errors.md: a file over 16 MiB
        sandbox.files.write("too-large.bin", b"x" * (wire.MAX_FILE_BYTES + 1))
    assert not sandbox.files.exists("too-large.bin")
    with pytest.raises(InvalidInputError):  # docs/errors.md: bad paths (empty, NUL)
        sandbox.files.read("a\x00b")


def test_commands_stdin_background_start_and_kill(sandbox: corral.Sandbox):
    assert sandbox.commands.run("read a; echo got $a", stdin=b"hi\n").stdout == "got hi\n"
    background = sandbox.commands.run("echo bg > background.txt", background=True)
    assert background.pid > 0 and background.log_path
    assert _poll(sandbox, "background.txt") == b"bg\n"
    reader = sandbox.commands.start("read line; echo \"got $line\" > started.txt; sleep 300", stdin=True)
    assert reader.pid in [process.pid for process in sandbox.commands.list()]
    sandbox.commands.send_stdin(reader.pid, "there\n")
    sandbox.commands.close_stdin(reader.pid)
    assert _poll(sandbox, "started.txt") == b"got there\n"
    assert sandbox.commands.kill(reader.pid) is True
    assert reader.wait(timeout=20).exit_code == 137
    assert reader.pid not in [process.pid for process in sandbox.commands.list()]
    assert sandbox.commands.kill(reader.pid) is False
    with pytest.raises(NotFoundError):
        sandbox.commands.send_stdin(reader.pid, "late")


def test_env_of_the_sandbox_and_of_a_run(sandbox: corral.Sandbox):
    code = "import os; print(os.environ['CONFORMANCE'], os.environ.get('PER_RUN'))"
    assert sandbox.run(code).stdout == "every level None\n"
    assert sandbox.commands.run("echo $CONFORMANCE/$PER_RUN", env={"PER_RUN": "x"}).stdout == "every level/x\n"
    assert sandbox.commands.run("echo ${PER_RUN:-unset}").stdout == "unset\n"  # a run's env is its own


def test_bad_input_is_refused_before_anything_runs(sandbox: corral.Sandbox):
    with pytest.raises(InvalidInputError, match="language"):
        sandbox.run("1", language="cobol")
    with pytest.raises(InvalidInputError, match="LD_PRELOAD"):
        sandbox.commands.run("true", env={"LD_PRELOAD": "/x.so"})
    with pytest.raises(InvalidInputError):
        sandbox.commands.run("true", cwd="a\x00b")
    with pytest.raises(InvalidInputError):
        sandbox.run("x" * (wire.MAX_CODE_BYTES + 1))
    assert sandbox.run("print('still fine')").stdout == "still fine\n"


def test_a_closed_sandbox_says_so(level: str):
    sandbox = corral.Sandbox(isolation=level).start()
    assert sandbox.run("print(1)").stdout == "1\n"
    sandbox.close()
    assert sandbox.closed
    with pytest.raises(SandboxClosedError):
        sandbox.run("print(1)")
    with pytest.raises(SandboxClosedError):
        sandbox.files.read("anything")
