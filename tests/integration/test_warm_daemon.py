"""The warm daemon behind a plain ``corral run``: served runs behave as in-process ones, and only its user gets in."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from corral.cli.warm import address

pytestmark = [pytest.mark.sandbox, pytest.mark.levels("process")]  # the CLI's default level
CORRAL = [sys.executable, "-m", "corral.cli"]


def _env(directory: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CORRAL_DAEMON": "auto", "CORRAL_DAEMON_DIR": str(directory), "CORRAL_DAEMON_IDLE": "60",
            **extra}


def corral(env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None):
    return subprocess.run([*CORRAL, *args], input=stdin, capture_output=True, text=True, timeout=120, env=env,
                          cwd=cwd, stdin=None if stdin is not None else subprocess.DEVNULL)


def status(env: dict[str, str]) -> dict | None:
    return json.loads(corral(env, "daemon", "status", "--json").stdout)


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found += [int(child) for child in handle.read().split()]
    return found


def _gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def daemon(tmp_path: Path):
    """A started daemon of its own directory: its environment for clients, stopped (and gone) afterwards."""
    env = _env(tmp_path / "daemon")
    started = corral(env, "daemon", "start")
    assert started.returncode == 0, started.stderr
    pid = status(env)["pid"]
    yield env
    corral(env, "daemon", "stop")
    assert _gone(pid)


def test_the_first_plain_run_starts_a_daemon_and_later_runs_are_served_by_it(tmp_path: Path):
    env = _env(tmp_path / "daemon")
    first = corral(env, "run", "-c", "print(1)")
    assert (first.returncode, first.stdout) == (0, "1\n")  # ran in-process, and started the daemon
    deadline = time.monotonic() + 30
    while status(env) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    before = status(env)
    assert before is not None and before["served"] == 0
    second = corral(env, "run", "-c", "print(2)")
    assert (second.returncode, second.stdout) == (0, "2\n")
    after = status(env)
    assert after["served"] == 1 and after["pid"] == before["pid"]
    sandboxes = _children(after["pid"])
    assert sandboxes  # its warm sandbox
    corral(env, "daemon", "stop")
    assert _gone(after["pid"]) and all(_gone(pid) for pid in sandboxes)  # stopping it leaves no sandbox behind


@pytest.mark.parametrize("args, stdin", [
    (["-c", "import sys; print(sys.stdin.read().upper(), end=''); print('e', file=sys.stderr); sys.exit(3)"], "in\n"),
    (["--json", "-c", "print(5)"], None),
    (["--timeout", "1", "-c", "import time; time.sleep(5)"], None),
    (["-l", "shell", "-c", "echo $X; kill -9 $$"], None),
    (["-e", "broken", "-c", "print(1)"], None),
    (["--memory", "64", "-c", "b = bytearray(200 << 20)"], None),
])
def test_a_served_run_ends_as_an_in_process_run(daemon, args, stdin):
    served, before = corral(daemon, "run", *args, stdin=stdin), status(daemon)["served"]
    here = corral({**daemon, "CORRAL_DAEMON": "off"}, "run", *args, stdin=stdin)
    if "--json" in args:
        served_result, here_result = json.loads(served.stdout), json.loads(here.stdout)
        assert served_result.keys() == here_result.keys()
        assert {key: served_result[key] for key in ("stdout", "stderr", "exit_code", "timed_out")} == \
            {key: here_result[key] for key in ("stdout", "stderr", "exit_code", "timed_out")}
    else:
        assert (served.returncode, served.stdout, served.stderr) == (here.returncode, here.stdout, here.stderr)
    assert status(daemon)["served"] == before  # the second one ran in-process


def test_a_served_run_reads_its_program_file_where_the_client_is(daemon, tmp_path: Path):
    (tmp_path / "prog.sh").write_text("echo from file")
    done = corral(daemon, "run", "prog.sh", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "from file\n")
    assert status(daemon)["served"] == 1


def test_a_client_with_other_settings_runs_its_program_itself(daemon):
    done = corral({**daemon, "CORRAL_SOME_SETTING": "1"}, "run", "-c", "print(7)")
    assert (done.returncode, done.stdout) == (0, "7\n")
    assert status(daemon)["served"] == 0


def test_an_interrupted_client_cancels_its_run(daemon):
    with subprocess.Popen([*CORRAL, "run", "-c", "import time; print('go', flush=True); time.sleep(60)"],
                          env=daemon, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                          text=True) as client:
        assert client.stdout.readline() == "go\n"
        assert status(daemon)["running"] == 1
        client.send_signal(signal.SIGINT)
        assert client.wait(timeout=30) == 130
    deadline = time.monotonic() + 15
    while status(daemon)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status(daemon)["running"] == 0
    again = corral(daemon, "run", "-c", "print(8)")
    assert again.stdout == "8\n"


def test_an_idle_daemon_exits(tmp_path: Path):
    env = {**_env(tmp_path / "daemon"), "CORRAL_DAEMON_IDLE": "1"}
    assert corral(env, "daemon", "start").returncode == 0
    pid = status(env)["pid"]
    assert _gone(pid, timeout=20)
    assert status(env) is None and not (tmp_path / "daemon" / "daemon.sock").exists()


def test_a_daemon_refuses_a_client_of_another_corral(daemon):
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(os.path.join(daemon["CORRAL_DAEMON_DIR"], "daemon.sock"))
        connection.sendall(json.dumps({"op": "run", "fingerprint": "0.0.1|elsewhere", "settings": {},
                                       "program": {"text": "print(1)", "language": "python", "stdin": None},
                                       "options": {}}).encode() + b"\n")
        answer = json.loads(connection.makefile("rb").readline())
    assert "another corral" in answer["refused"]
    assert status(daemon)["served"] == 0


_SERVE_OPEN = """
import asyncio, os, sys
from corral.cli.warm.server import Daemon
path = sys.argv[1]
async def main():
    daemon = Daemon(60.0)
    task = asyncio.ensure_future(daemon.serve(path))
    while not os.path.exists(path):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    os.chmod(path, 0o666)  # what a careless setup could leave: anybody may connect
    print("ready", flush=True)
    await task
asyncio.run(main())
"""


_ASK_AS_STRANGER = """
import socket, sys
with socket.socket(socket.AF_UNIX) as connection:
    connection.settimeout(10)
    connection.connect(sys.argv[1])
    try:
        connection.sendall(b'{"op": "status"}\\n')
        got = connection.makefile("rb").read()
    except (BrokenPipeError, ConnectionResetError):  # closed before (or with) the request unread
        got = b""
sys.stdout.buffer.write(got or b"<nothing>")
"""


def test_attack_another_user_gets_nothing_from_the_daemon_and_clients_shun_an_open_directory(tmp_path: Path):
    """ATTACK: uid 65534 connects to a daemon whose socket it can reach; a client never uses a directory
    that other users can write."""
    open_dir = Path(tempfile.mkdtemp(prefix="corral-open-daemon-", dir="/tmp"))  # reachable by uid 65534
    open_dir.chmod(0o755)
    path = str(open_dir / "daemon.sock")
    with subprocess.Popen([sys.executable, "-c", _SERVE_OPEN, path], stdout=subprocess.PIPE, text=True,
                          env=_env(open_dir)) as server:
        try:
            assert server.stdout.readline() == "ready\n"

            def ask() -> bytes:
                with socket.socket(socket.AF_UNIX) as connection:
                    connection.settimeout(10)
                    connection.connect(path)
                    connection.sendall(b'{"op": "status"}\n')
                    return connection.makefile("rb").read()

            assert b'"status"' in ask()  # its own user is answered
            stranger = subprocess.run(["/usr/bin/python3", "-c", _ASK_AS_STRANGER, path], capture_output=True, timeout=60,
                                      user=65534, group=65534, extra_groups=[], cwd="/")
            got = stranger.stdout
            assert got == b"<nothing>", stranger.stderr  # connected, and closed without a word

            done = corral(_env(open_dir), "run", "-c", "print(9)")
            assert (done.returncode, done.stdout) == (0, "9\n")  # ran in-process
            assert json.loads(ask())["status"]["served"] == 0
        finally:
            server.kill()
            server.wait()
            shutil.rmtree(open_dir)


def test_no_daemon_is_used_or_started_when_turned_off_or_where_its_socket_path_cannot_fit(tmp_path: Path):
    for env in ({**_env(tmp_path / "off"), "CORRAL_DAEMON": "off"}, _env(tmp_path / ("x" * 120))):
        done = corral(env, "run", "-c", "print(6)")
        assert (done.returncode, done.stdout) == (0, "6\n")
        time.sleep(0.5)
        assert not Path(env["CORRAL_DAEMON_DIR"]).exists()  # nothing was started


def test_a_run_starts_only_once_its_client_says_go(daemon):
    """A client that gave up waiting for "ready" runs the program itself: the daemon must not run it too."""
    request = json.dumps({"op": "run", "fingerprint": address.fingerprint(), "settings": address.settings(daemon),
                          "program": {"text": "print(4)", "language": "python", "stdin": None},
                          "options": {}}).encode() + b"\n"
    path = os.path.join(daemon["CORRAL_DAEMON_DIR"], "daemon.sock")
    for go in (b"", b"nope\n", address.GO):
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(60)
            connection.connect(path)
            connection.sendall(request)
            lines = connection.makefile("rb")
            assert json.loads(lines.readline()) == {"ready": True}
            if go != address.GO:
                connection.sendall(go)
                connection.shutdown(socket.SHUT_WR)
                assert lines.read() == b""
                continue
            connection.sendall(go)
            frames = [json.loads(line) for line in lines]
    assert frames == [{"out": "4\n"}, {"exit": 0, "stdout": None, "notes": []}]
    assert status(daemon)["served"] == 1  # only the one that said go


def test_a_served_run_loads_no_pydantic_typer_or_model_in_the_client(daemon):
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n"
            "sys.argv = ['corral', 'run', '-c', 'print(3)']\n"
            "from corral.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=daemon,
                          stdin=subprocess.DEVNULL, timeout=120)
    printed, loaded = done.stdout.splitlines()[0], json.loads(done.stdout.splitlines()[-1])
    assert (done.returncode, printed) == (0, "3") and status(daemon)["served"] == 1
    heavy = ("pydantic", "typer", "click", "corral.models", "corral.sandbox", "asyncio", "corral.cli.run_options")
    assert [name for name in loaded if name.startswith(heavy) or name == "corral.cli.run"] == []
