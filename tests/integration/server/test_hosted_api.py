"""One suite for hosted sandboxes, run against local mode (in process) and remote mode (a real server)."""

from __future__ import annotations

import pytest

import corral
from corral import Sandbox
from corral.errors import InvalidInputError, NotFoundError, SandboxClosedError

pytestmark = pytest.mark.sandbox


@pytest.fixture
def hosted(where: dict):
    sandbox = Sandbox.create(**where, timeout=600, metadata={"suite": "hosted"})
    yield sandbox
    sandbox.kill()


@pytest.mark.direct
def test_run_keeps_state_files_and_commands(hosted):
    assert hosted.run("x = 1").exit_code == 0
    assert hosted.run("print(x + 1)").stdout == "2\n"
    assert hosted.files.write("notes.txt", b"...") == 3
    assert hosted.files.read("notes.txt") == b"..."
    assert hosted.commands.run("ls").stdout == "notes.txt\n"
    assert [entry.name for entry in hosted.files.list()] == ["notes.txt"]
    hosted.files.remove("notes.txt")
    assert hosted.files.list() == []
    assert hosted.run("console.log(6 * 7)", language="javascript").stdout == "42\n"
    failed = hosted.run("raise SystemExit(3)")
    assert failed.exit_code == 3 and not failed.ok
    rich = hosted.run("display({'k': 1})\n6 * 7")
    assert rich.text == "42" and rich.results[0].data["application/json"] == {"k": 1}
    assert hosted.run("int('x')").error.name == "ValueError"


@pytest.mark.direct
def test_streaming_and_callbacks(hosted):
    seen = []
    result = hosted.run("for i in range(3): print(i)", on_stdout=seen.append)
    assert "".join(seen) == result.stdout == "0\n1\n2\n"
    events = list(hosted.stream("import sys; print('a'); print('b', file=sys.stderr)"))
    assert isinstance(events[-1], corral.ExecutionResult)
    assert {(e.stream, e.data) for e in events[:-1]} == {("stdout", "a\n"), ("stderr", "b\n")}
    errors = []
    command = hosted.commands.run("echo out; echo err >&2; exit 2", on_stderr=errors.append)
    assert (command.stdout, command.exit_code, "".join(errors)) == ("out\n", 2, "err\n")
    background = hosted.commands.run("sleep 0.1", background=True)
    assert background.pid > 0


def test_stat_make_dir_rename_and_processes(hosted):
    made = hosted.files.make_dir("a/b", parents=True)
    assert (made.kind, made.path) == ("dir", "/home/user/a/b")
    hosted.files.write("a/f.txt", "12345", mode=0o600)
    info = hosted.files.stat("a/f.txt")
    assert (info.kind, info.size, info.mode) == ("file", 5, 0o600)
    assert hosted.files.rename("a/f.txt", "a/b/g.txt").path == "/home/user/a/b/g.txt"
    assert hosted.files.exists("a/b/g.txt") and not hosted.files.exists("a/f.txt")
    with pytest.raises(corral.FileOperationError) as taken:
        hosted.files.make_dir("a")
    assert taken.value.code == "exists"
    reader = hosted.commands.start("read line; echo \"got $line\" > got.txt; sleep 300", stdin=True)
    listed = hosted.commands.list()
    assert [(p.pid, p.cmd, p.stdin) for p in listed] == [(reader.pid, listed[0].cmd, True)]
    hosted.commands.send_stdin(reader.pid, "hi\n")
    hosted.commands.close_stdin(reader.pid)
    assert hosted.commands.run("for i in $(seq 50); do test -s got.txt && break; sleep 0.1; done; cat got.txt"
                               ).stdout == "got hi\n"
    assert hosted.commands.kill(reader.pid) is True
    assert "sleep 300" not in hosted.commands.run("ps -eo args").stdout
    assert hosted.commands.list() == [] and hosted.commands.kill(reader.pid) is False
    with pytest.raises(NotFoundError):
        hosted.commands.send_stdin(reader.pid, "late")


def test_pause_resume_brings_files_back(hosted, where):
    hosted.files.write("dir/data.bin", bytes(range(256)), mode=0o600)
    hosted.commands.run("mkdir -p empty && ln -s dir/data.bin link")
    snapshot = hosted.pause()
    assert snapshot.sandbox_id == hosted.id and snapshot.file_count == 1 and not snapshot.memory
    assert Sandbox.connect(hosted.id, **where).info.state == "paused"
    resumed = Sandbox.resume(snapshot.id, **where)
    try:
        assert resumed.id != hosted.id and resumed.info.resumed_from == snapshot.id
        assert resumed.files.read("dir/data.bin") == bytes(range(256))
        assert resumed.commands.run("stat -c %a dir/data.bin; readlink link; test -d empty && echo dir").stdout == (
            "600\ndir/data.bin\ndir\n")
        assert resumed.metadata == {"suite": "hosted"}
        assert Sandbox.connect(hosted.id, **where).info.state == "stopped"
    finally:
        resumed.kill()


@pytest.mark.direct
def test_list_connect_kill_and_events(hosted, where):
    other = Sandbox.create(**where, metadata={"suite": "hosted", "role": "other"})
    try:
        listed = Sandbox.list(**where, metadata={"suite": "hosted"})
        assert {hosted.id, other.id} <= {info.id for info in listed}
        assert [info.id for info in Sandbox.list(**where, metadata={"role": "other"})] == [other.id]
        again = Sandbox.connect(hosted.id, **where)
        again.run("y = 5")
        assert hosted.run("print(y)").stdout == "5\n"  # the same interpreter
        again.close()
    finally:
        other.kill()
    assert Sandbox.connect(other.id, **where).info.state == "stopped"
    assert [event.kind for event in Sandbox.connect(other.id, **where).events()] == [
        "created", "started", "killed", "stopped"]


@pytest.mark.direct
def test_errors_are_the_same_in_both_modes(hosted, where):
    with pytest.raises(NotFoundError):
        Sandbox.connect("sbx_does_not_exist", **where)
    with pytest.raises(NotFoundError):
        Sandbox.create("cobol", **where)
    with pytest.raises(InvalidInputError):
        hosted.run("1", env={"LD_PRELOAD": "x"})
    with pytest.raises(InvalidInputError):
        Sandbox.create(**where, metadata={"bad key": "x"})
    with pytest.raises(corral.FileOperationError) as caught:
        hosted.files.read("missing.txt")
    assert caught.value.code == "not_found"
    closed = Sandbox.create(**where)
    closed_id = closed.id
    closed.kill()
    with pytest.raises(SandboxClosedError):
        Sandbox.connect(closed_id, **where).run("1")


@pytest.mark.direct
def test_set_timeout_extends_life(hosted):
    before = hosted.info.expires_at
    assert hosted.set_timeout(3600).expires_at > before
    assert [event.kind for event in hosted.events()][-1] == "timeout"


async def test_async_api_from_another_event_loop(where):
    sandbox = await corral.AsyncSandbox.create(**where, metadata={"suite": "async"})
    try:
        assert (await sandbox.run("x = 20")).ok
        events = [event async for event in sandbox.stream("print(x * 2)")]
        assert events[-1].stdout == "40\n"
        await sandbox.files.write("a.txt", "async")
        snapshot = await sandbox.pause()
    finally:
        await sandbox.kill()
    resumed = await corral.AsyncSandbox.resume(snapshot.id, **where)
    assert await resumed.files.read_text("a.txt") == "async"
    assert [info.id for info in await corral.AsyncSandbox.list(**where, metadata={"suite": "async"})][0] == resumed.id
    await resumed.kill()


@pytest.mark.slow
def test_files_over_the_protocol_limit_survive_pause_and_resume(hosted, where):
    made = hosted.commands.run("mkdir -p big && head -c 40000000 /dev/urandom > big/blob.bin && chmod 640 big/blob.bin"
                               " && sha256sum big/blob.bin")
    assert made.ok, made.stderr
    snapshot = hosted.pause()
    assert snapshot.size_bytes == 40_000_000
    resumed = Sandbox.resume(snapshot.id, **where)
    try:
        again = resumed.commands.run("sha256sum big/blob.bin; stat -c %a big/blob.bin")
        assert again.stdout == made.stdout + "640\n"
    finally:
        resumed.kill()


@pytest.mark.direct
def test_files_of_any_size_through_the_client(hosted):
    payload = bytes(range(256)) * (18 * 4096)  # 18 MiB: over the agent's 16 MiB per operation
    assert hosted.files.write("large.bin", payload) == len(payload)
    assert hosted.files.read("large.bin") == payload


@pytest.mark.direct
def test_terminal_in_both_modes(hosted, where):
    with hosted.terminal(cols=100, rows=30) as terminal:
        terminal.write("stty size; echo ready-$((40+2))\n")
        assert "30 100" in terminal.read_until("ready-42")
        terminal.resize(120, 40)
        terminal.write("stty size; echo sized-$((1+1))\n")
        assert "40 120" in terminal.read_until("sized-2")
        terminal.write("exit 4\n")
        list(terminal)
        assert terminal.exit_code == 4
    with hosted.terminal(command="echo one-shot") as terminal:
        assert "one-shot" in "".join(terminal) and terminal.exit_code == 0
    with pytest.raises(InvalidInputError):
        hosted.terminal(cols=0)
    closed = Sandbox.create(**where)
    closed.kill()
    with pytest.raises(SandboxClosedError):
        with Sandbox.connect(closed.id, **where).terminal() as terminal:
            list(terminal)
