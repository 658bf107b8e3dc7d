"""The unmodified ``e2b`` SDK (sync API) against a real ``corral serve``: sandboxes, commands, PTYs, files."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from e2b import CommandExitException, NotFoundException, Sandbox, SandboxQuery, TimeoutException
from e2b.exceptions import AuthenticationException, SandboxException
from e2b.sandbox.commands.command_handle import PtySize


@pytest.fixture
def sandbox():
    sandbox = Sandbox.create(timeout=120)
    yield sandbox
    sandbox.kill()


def test_create_maps_timeout_metadata_and_envs(server):
    sandbox = Sandbox.create("base", timeout=90, metadata={"user": "a b", "team": "x"}, envs={"FOO": "bar"})
    try:
        info = sandbox.get_info()
        assert info.template_id == "base" and info.metadata == {"user": "a b", "team": "x"}
        assert 80 <= (info.end_at - info.started_at).total_seconds() <= 91  # E2B's timeout is the time to live
        assert sandbox.commands.run("echo $FOO").stdout == "bar\n"
        with server.client() as corral_api:  # the same sandbox through corral's own API
            corral_info = corral_api.get(f"/sandboxes/{sandbox.sandbox_id}").json()
        assert corral_info["state"] == "running" and corral_info["metadata"]["user"] == "a b"
    finally:
        assert sandbox.kill() is True
    assert Sandbox.kill(sandbox.sandbox_id) is False  # E2B: killing a gone sandbox returns False


def test_foreground_commands_stream_and_fail_as_e2b_does(sandbox):
    chunks = []
    result = sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 0.05; done; echo oops >&2",
                                  on_stdout=chunks.append, on_stderr=chunks.append)
    assert (result.stdout, result.stderr, result.exit_code) == ("1\n2\n3\n", "oops\n", 0)
    assert "".join(chunks) == "1\n2\n3\noops\n"
    with pytest.raises(CommandExitException) as failed:
        sandbox.commands.run("echo partial; exit 3")
    assert failed.value.exit_code == 3 and failed.value.stdout == "partial\n"
    assert sandbox.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sandbox.commands.run("echo $A", envs={"A": "1"}).stdout == "1\n"
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 10


def test_background_handles_wait_kill_list_connect(sandbox):
    waiting = sandbox.commands.run("sleep 0.3; echo done", background=True)
    assert waiting.wait().stdout == "done\n"
    sleeper = sandbox.commands.run("sleep 60", background=True)
    assert sleeper.pid in [process.pid for process in sandbox.commands.list()]
    listed = next(process for process in sandbox.commands.list() if process.pid == sleeper.pid)
    assert listed.cmd == "/bin/bash" and "sleep 60" in listed.args
    assert sandbox.commands.kill(sleeper.pid) is True
    with pytest.raises(CommandExitException) as killed:
        sleeper.wait()
    assert killed.value.exit_code == -1
    assert sandbox.commands.kill(sleeper.pid) is False  # gone: E2B returns False
    later = sandbox.commands.run("sleep 0.5; echo later", background=True)
    later.disconnect()  # the process lives on without its stream
    assert sandbox.commands.connect(later.pid).wait().stdout == "later\n"


def test_stdin_send_and_close(sandbox):
    reader = sandbox.commands.run("cat; echo end", stdin=True, background=True)
    sandbox.commands.send_stdin(reader.pid, "line 1\n")
    sandbox.commands.send_stdin(reader.pid, b"line 2\n")
    sandbox.commands.close_stdin(reader.pid)
    assert reader.wait().stdout == "line 1\nline 2\nend\n"
    with pytest.raises(NotFoundException):
        sandbox.commands.send_stdin(reader.pid, "late")


def test_pty_create_input_resize_kill(sandbox):
    output = []
    terminal = sandbox.pty.create(PtySize(rows=24, cols=80))
    sandbox.pty.resize(terminal.pid, PtySize(rows=30, cols=100))
    sandbox.pty.send_stdin(terminal.pid, b"stty size; echo pty-$((40+2)); exit\n")
    result = terminal.wait(on_pty=output.append)
    text = b"".join(output).decode()
    assert "pty-42" in text and "30 100" in text and result.exit_code == 0
    other = sandbox.pty.create(PtySize(rows=24, cols=80))
    assert sandbox.pty.kill(other.pid) is True


def test_files_read_write_list_stat_dirs_rename_remove(sandbox):
    sandbox.files.write("a.txt", "hello")
    assert sandbox.files.read("a.txt") == "hello"
    assert sandbox.files.read("/home/user/a.txt", format="bytes") == bytearray(b"hello")
    sandbox.files.write("bin/data", b"\x00\xff" * 1000)
    assert bytes(sandbox.files.read("bin/data", format="bytes")) == b"\x00\xff" * 1000
    sandbox.files.write("zipped.txt", "compressed on the wire " * 100, gzip=True)
    assert sandbox.files.read("zipped.txt", gzip=True) == "compressed on the wire " * 100
    sandbox.files.write("streamed.bin", io.BytesIO(b"from a stream"))
    assert b"".join(sandbox.files.read("streamed.bin", format="stream")) == b"from a stream"
    written = sandbox.files.write_files([{"path": "d/x.txt", "data": "x"}, {"path": "/home/user/d/y.txt", "data": b"y"}])
    assert sorted(info.path for info in written) == ["/home/user/d/x.txt", "/home/user/d/y.txt"]
    assert sandbox.files.exists("d/x.txt") and not sandbox.files.exists("nope")
    info = sandbox.files.get_info("d/x.txt")
    assert (info.name, info.type.value, info.size, info.path) == ("x.txt", "file", 1, "/home/user/d/x.txt")
    assert info.permissions == "-rw-r--r--"
    with pytest.raises(NotFoundException):
        sandbox.files.get_info("nope")
    with pytest.raises(NotFoundException):
        sandbox.files.read("nope.txt")
    assert sandbox.files.make_dir("d/e/f") is True and sandbox.files.make_dir("d/e/f") is False
    assert [entry.name for entry in sandbox.files.list("d")] == ["e", "x.txt", "y.txt"]
    assert "/home/user/d/e/f" in [entry.path for entry in sandbox.files.list("d", depth=3)]
    assert sandbox.files.rename("d/x.txt", "d/z.txt").path == "/home/user/d/z.txt"
    assert not sandbox.files.exists("d/x.txt")
    sandbox.files.remove("d")
    sandbox.files.remove("d")  # a missing path is fine
    assert not sandbox.files.exists("d")


def test_watch_dir_reports_changes(sandbox):
    sandbox.files.make_dir("watched")
    handle = sandbox.files.watch_dir("watched")
    sandbox.files.write("watched/new.txt", "n")
    events = []
    deadline = time.monotonic() + 10
    while not any(event.name == "new.txt" for event in events) and time.monotonic() < deadline:
        time.sleep(0.05)
        events += handle.get_new_events()
    handle.stop()
    # corral writes a file atomically (a temporary file renamed into place): those are the real events
    assert any(event.name == "new.txt" and event.type.value in ("create", "rename") for event in events)
    sandbox.files.remove("watched/new.txt")


def test_list_filters_metadata_and_pages():
    made = [Sandbox.create(timeout=60, metadata={"suite": "paging", "n": str(n)}) for n in range(3)]
    try:
        query = SandboxQuery(metadata={"suite": "paging"})
        paginator = Sandbox.list(query=query, limit=2)
        first = paginator.next_items()
        assert len(first) == 2 and paginator.has_next
        rest = paginator.next_items()
        assert not paginator.has_next
        assert sorted(info.sandbox_id for info in first + rest) == sorted(sandbox.sandbox_id for sandbox in made)
        only = Sandbox.list(query=SandboxQuery(metadata={"suite": "paging", "n": "1"})).next_items()
        assert [info.sandbox_id for info in only] == [made[1].sandbox_id]
    finally:
        for sandbox in made:
            sandbox.kill()
    assert Sandbox.list(query=SandboxQuery(metadata={"suite": "paging"})).next_items() == []


def test_set_timeout_pause_connect_keeps_the_id_and_files():
    sandbox = Sandbox.create(timeout=60)
    try:
        sandbox.set_timeout(300)
        info = sandbox.get_info()
        assert (info.end_at - info.started_at).total_seconds() > 250
        sandbox.files.write("kept.txt", "kept")
        assert sandbox.pause() is True
        listed = {info.sandbox_id: info.state.value for info in Sandbox.list().next_items()}
        assert listed[sandbox.sandbox_id] == "paused"
        resumed = Sandbox.connect(sandbox.sandbox_id, timeout=120)
        assert resumed.sandbox_id == sandbox.sandbox_id
        assert resumed.files.read("kept.txt") == "kept"
        assert resumed.commands.run("echo back").stdout == "back\n"
        again = Sandbox.connect(sandbox.sandbox_id)  # running: only the time to live changes
        assert again.commands.run("echo still").stdout == "still\n"
    finally:
        assert Sandbox.kill(sandbox.sandbox_id) is True
    assert sandbox.sandbox_id not in [info.sandbox_id for info in Sandbox.list().next_items()]


def test_the_same_object_works_after_pause_and_connect():
    sandbox = Sandbox.create(timeout=60)
    try:
        sandbox.files.write("kept.txt", "kept")
        sandbox.pause()
        assert sandbox.connect() is sandbox  # the SDK keeps its first token: it is still good
        assert sandbox.files.read("kept.txt") == "kept"
        assert sandbox.commands.run("echo resumed").stdout == "resumed\n"
    finally:
        sandbox.kill()


def test_access_tokens_and_keys_are_checked(server, sandbox, monkeypatch):
    other = Sandbox.create(timeout=60)
    try:
        envd = {"E2b-Sandbox-Id": other.sandbox_id, "E2b-Sandbox-Port": "49983",
                "X-Access-Token": sandbox._envd_access_token, "Content-Type": "application/json"}
        answer = httpx.post(f"{server.url}/filesystem.Filesystem/Stat", json={"path": "/"}, headers=envd)
        assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"
        answer = httpx.post(f"{server.url}/filesystem.Filesystem/Stat", json={"path": "/"},
                            headers={**envd, "X-Access-Token": ""})
        assert answer.status_code == 401
        answer = httpx.post(f"{server.url}/filesystem.Filesystem/Stat", json={"path": "/"},
                            headers={**envd, "X-Access-Token": other._envd_access_token})
        assert answer.status_code == 200 and answer.json()["entry"]["type"] == "FILE_TYPE_DIRECTORY"
    finally:
        other.kill()
    monkeypatch.setenv("E2B_API_KEY", "ck_nope_nope")
    with pytest.raises(AuthenticationException):
        Sandbox.create(timeout=60)
    with pytest.raises(AuthenticationException):
        Sandbox.list().next_items()


def test_a_killed_sandbox_is_not_running(sandbox):
    assert sandbox.is_running()
    sandbox.kill()
    assert not sandbox.is_running()
    with pytest.raises(SandboxException, match="was not found|not running"):
        sandbox.commands.run("echo hi")
