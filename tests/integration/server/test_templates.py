"""Templates, in local and remote mode: build with progress, content addressing, sandboxes made from them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from corral import Sandbox
from corral.client import HostedSandbox
from corral.errors import InvalidInputError, LimitExceededError, NotFoundError, SandboxClosedError, SandboxStartError

pytestmark = pytest.mark.sandbox

WEBAPP = {
    "name": "webapp",
    "base": "python",
    "env": {"GREETING": "hello"},
    "steps": [
        {"files": {"site/index.html": "<h1>hi</h1>"}},
        {"run": "mkdir -p lib && echo 'VALUE = 42' > lib/settings.py && chmod 700 lib"},
        {"env": {"STAGE": "test"}},
    ],
    "start_cmd": "exec python3 -m http.server 8000 --bind 127.0.0.1 --directory site",
    "ready_cmd": "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8000/\")'",
}


def test_build_reports_progress_and_builds_once(where):
    progress = []
    info = HostedSandbox.build_template(WEBAPP, **where, on_progress=lambda *event: progress.append(event))
    assert info.id.startswith("tpl_") and info.name == "webapp" and not info.cached
    assert info.file_count == 2 and info.size_bytes == len("<h1>hi</h1>") + len("VALUE = 42\n")
    assert [step for step, _, _ in progress] == [1, 2, 3, 4, 5] and {total for _, total, _ in progress} == {5}
    assert progress[2][2].startswith("run: mkdir -p lib")
    again = HostedSandbox.build_template(WEBAPP, **where)
    assert again.cached and again.id == info.id
    renamed = HostedSandbox.build_template({**WEBAPP, "name": "webapp-2"}, **where)
    assert renamed.cached and renamed.id == info.id  # the name is only a label
    changed = HostedSandbox.build_template({**WEBAPP, "env": {"GREETING": "hi"}}, **where)
    assert not changed.cached and changed.id != info.id


def test_sandbox_from_template_has_its_files_env_and_running_service(where):
    HostedSandbox.build_template(WEBAPP, **where)
    sandbox = Sandbox.create("webapp", **where)
    try:
        result = sandbox.run("import os, sys; sys.path.insert(0, 'lib'); import settings\n"
                             "print(settings.VALUE, os.environ['GREETING'], os.environ['STAGE'])")
        assert result.stdout == "42 hello test\n"
        page = sandbox.commands.run("python3 -c \"import urllib.request; "
                                    "print(urllib.request.urlopen('http://127.0.0.1:8000/').read().decode())\"")
        assert page.stdout == "<h1>hi</h1>\n"
        assert sandbox.commands.run("stat -c %a lib").stdout == "700\n"
        assert sandbox.info.template == "webapp"
        sandbox.files.write("site/index.html", "<h1>edited</h1>")
        snapshot = sandbox.pause()
        # the name now means another build: the snapshot still resumes as it was paused
        HostedSandbox.build_template({**WEBAPP, "env": {"GREETING": "changed"}, "steps": []}, **where)
        resumed = Sandbox.resume(snapshot.id, **where)  # files back, then the template's service again
        assert "<h1>edited</h1>" in resumed.commands.run("python3 -c \"import urllib.request; "
                                                         "print(urllib.request.urlopen('http://127.0.0.1:8000/').read())\"").stdout
        assert resumed.run("import os; print(os.environ['GREETING'], open('lib/settings.py').read())").stdout == (
            "hello VALUE = 42\n\n")
        resumed.kill()
    finally:
        sandbox.kill()


def test_failing_step_or_readiness_is_a_clear_error(where):
    broken = {"name": "broken", "steps": [{"run": "echo about to fail >&2; exit 3"}]}
    with pytest.raises(InvalidInputError, match="step 2 .* failed \\(exit 3\\): about to fail"):
        HostedSandbox.build_template(broken, **where)
    with pytest.raises(NotFoundError):
        Sandbox.create("broken", **where)
    with pytest.raises(InvalidInputError, match="exactly one"):
        HostedSandbox.build_template({"name": "x", "steps": [{"run": "true", "env": {"A": "1"}}]}, **where)
    with pytest.raises(InvalidInputError):
        HostedSandbox.build_template({"name": "x", "steps": [{"files": {"/../\u0000": "x"}}]}, **where)
    HostedSandbox.build_template({"name": "never-ready", "ready_cmd": "exit 1", "ready_timeout": 0.5}, **where)
    with pytest.raises(SandboxStartError, match="ready_cmd did not succeed"):
        Sandbox.create("never-ready", **where)
    stopped = [info for info in Sandbox.list(**where) if info.template == "never-ready"]
    assert stopped and {info.state for info in stopped} == {"stopped"}


def test_cli_builds_with_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_LOCAL_DIR", str(tmp_path / "local"))
    definition = tmp_path / "tpl.toml"
    definition.write_text('name = "cli"\nbase = "shell"\n[[steps]]\nrun = "echo built > marker"\n')
    built = subprocess.run([sys.executable, "-m", "corral.cli", "template", "build", str(definition)],
                           capture_output=True, text=True, check=True)
    assert built.stdout.strip().startswith("tpl_")
    assert "[1/3] starting a shell sandbox" in built.stderr and "[2/3] run: echo built > marker" in built.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "Bad Name"}))
    refused = subprocess.run([sys.executable, "-m", "corral.cli", "template", "build", str(bad)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "name" in refused.stderr


def test_kill_during_a_slow_create_stops_it(where):
    HostedSandbox.build_template({"name": "slow", "ready_cmd": "test -e /tmp/never", "ready_timeout": 600}, **where)
    outcome = {}

    def create():
        try:
            Sandbox.create("slow", **where, metadata={"case": "kill-while-creating"})
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome["error"] = exc

    creating = threading.Thread(target=create)
    creating.start()
    deadline = time.monotonic() + 30
    while not (listed := Sandbox.list(**where, metadata={"case": "kill-while-creating"})) and time.monotonic() < deadline:
        time.sleep(0.02)
    sandbox = Sandbox.connect(listed[0].id, **where)
    assert sandbox.info.state == "creating"
    sandbox.kill()
    creating.join(30)
    assert not creating.is_alive() and isinstance(outcome["error"], SandboxClosedError)
    assert Sandbox.connect(sandbox.id, **where).info.state == "stopped"
    events = Sandbox.connect(sandbox.id, **where).events()
    assert [(event.kind, event.state) for event in events] == [
        ("created", "creating"), ("killed", "stopping"), ("start_failed", "stopped")]


def test_template_builds_count_against_the_sandboxes_of_a_key(server):
    where = {"server": server.url, "api_key": server.key}
    live = [Sandbox.create(**where) for _ in range(6 - len(Sandbox.list(**where, state="running")))]
    try:  # the module's server allows 6 live sandboxes per key
        with pytest.raises(LimitExceededError):
            HostedSandbox.build_template({"name": "over-quota", "steps": [{"run": "true"}]}, **where)
    finally:
        for sandbox in live:
            sandbox.kill()
    assert HostedSandbox.build_template({"name": "over-quota", "steps": [{"run": "true"}]}, **where).name == "over-quota"
