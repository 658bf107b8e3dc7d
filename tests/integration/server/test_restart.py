"""Server restarts: ten pause/resume cycles across restarts lose nothing; a crash is recovered from."""

from __future__ import annotations

import hashlib
import signal
import time
import uuid

import pytest

from corral import Sandbox
from serverprocess import ServerProcess, host_processes_with

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

#: Generous bound for the host to reap killed processes (a poll, not a timing assertion).
WAIT_S = 30.0


def test_ten_pause_resume_cycles_with_server_restarts_lose_nothing(fresh_server):
    where = {"server": fresh_server.url, "api_key": fresh_server.key}
    sandbox = Sandbox.create(**where, timeout=600, metadata={"test": "cycles"})
    sandbox.commands.run("mkdir -p keep/empty && ln -s ../journal.txt keep/journal-link")
    expected: dict[str, bytes] = {}
    for cycle in range(10):
        text = f"cycle {cycle}\n".encode()
        blob = hashlib.sha256(text).digest() * (1000 * (cycle + 1))  # up to ~320 KB, all byte values
        sandbox.files.write(f"cycle-{cycle}.txt", text)
        sandbox.files.write(f"deep/{cycle}/blob.bin", blob, mode=0o600)
        sandbox.commands.run(f"echo line {cycle} >> journal.txt")
        sandbox.run(f"open('from-run.txt', 'a').write('{cycle},')")
        expected.update({f"cycle-{cycle}.txt": text, f"deep/{cycle}/blob.bin": blob})
        expected["journal.txt"] = "".join(f"line {i}\n" for i in range(cycle + 1)).encode()
        expected["from-run.txt"] = "".join(f"{i}," for i in range(cycle + 1)).encode()
        snapshot = sandbox.pause()
        if cycle == 3:
            fresh_server.restart()  # graceful
        elif cycle == 7:
            fresh_server.restart(signal.SIGKILL)  # a crash right after the pause answered
        sandbox = Sandbox.resume(snapshot.id, **where, timeout=600)
        for path, content in expected.items():
            assert sandbox.files.read(path) == content, (cycle, path)
        state = sandbox.commands.run("stat -c %a deep/0/blob.bin; readlink keep/journal-link; test -d keep/empty && echo ok")
        assert state.stdout == "600\n../journal.txt\nok\n", cycle
    listed = {entry.name for entry in sandbox.files.list()}
    assert listed == {"keep", "deep", "journal.txt", "from-run.txt", *(f"cycle-{i}.txt" for i in range(10))}
    sandbox.kill()


def test_restart_after_a_crash_marks_dead_kills_orphans_keeps_paused(fresh_server):
    where = {"server": fresh_server.url, "api_key": fresh_server.key}
    marker = f"corral-orphan-{uuid.uuid4().hex}"
    running = Sandbox.create(**where, timeout=600)
    running.commands.run(f"exec -a {marker} sleep 1000", background=True)
    deadline = time.monotonic() + WAIT_S
    while not host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes_with(marker), "the sandbox's process should be visible on the host"
    paused = Sandbox.create(**where, timeout=600)
    paused.files.write("kept.txt", b"survives the crash")
    snapshot = paused.pause()

    fresh_server.restart(signal.SIGKILL)

    deadline = time.monotonic() + WAIT_S
    while host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not host_processes_with(marker), "an orphaned sandbox process outlived the crashed server"
    info = Sandbox.connect(running.id, **where)
    assert info.info.state == "stopped"
    assert [event.kind for event in info.events()][-1] == "died"
    assert Sandbox.connect(paused.id, **where).info.state == "paused"
    resumed = Sandbox.resume(snapshot.id, **where)
    assert resumed.files.read("kept.txt") == b"survives the crash"
    resumed.kill()


def test_graceful_shutdown_records_every_running_sandbox_stopped(fresh_server):
    where = {"server": fresh_server.url, "api_key": fresh_server.key}
    sandbox = Sandbox.create(**where, timeout=600)
    fresh_server.restart()
    again = Sandbox.connect(sandbox.id, **where)
    assert again.info.state == "stopped"
    assert [event.kind for event in again.events()][-2:] == ["shutdown", "stopped"]


def test_pause_on_shutdown_keeps_running_sandboxes_files(tmp_path):
    server = ServerProcess(tmp_path, "--pause-on-shutdown").start()
    try:
        where = {"server": server.url, "api_key": server.key}
        sandbox = Sandbox.create(**where, timeout=600)
        sandbox.files.write("work.txt", "unsaved work")
        server.restart()
        again = Sandbox.connect(sandbox.id, **where)
        assert again.info.state == "paused" and again.info.snapshot_id
        resumed = Sandbox.resume(again.info.snapshot_id, **where)
        assert resumed.files.read("work.txt") == b"unsaved work"
        resumed.kill()
    finally:
        server.stop()
