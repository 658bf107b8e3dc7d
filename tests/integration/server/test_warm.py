"""``corral serve --warm N``: creates are handed sandboxes prepared ahead, per template."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pytest

from corral import Sandbox
from corral.client import HostedSandbox
from corral.contract.schemas import CreateSandbox
from corral.hosted.service import SandboxService, ServiceConfig
from serverprocess import ServerProcess, host_processes_with

pytestmark = pytest.mark.sandbox

#: Bound on waiting for the background refill (a poll deadline, not a timing assertion).
WAIT_S = 30.0


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.key}"}).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_ready(server: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while _metric(server, "corral_warm_ready") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server, "corral_warm_ready") >= count


def test_warm_creates_are_prepared_fresh_and_cleaned_up(tmp_path):
    server = ServerProcess(tmp_path, "--warm", "2").start()
    marker = f"corral-warm-{uuid.uuid4().hex}"
    try:
        where = {"server": server.url, "api_key": server.key}
        HostedSandbox.build_template({"name": "svc", "steps": [{"files": {"conf.txt": "layer"}}],
                                      "start_cmd": f"exec -a {marker} sleep 1000"}, **where)
        first = Sandbox.create("svc", **where)  # the first create of a template is cold and starts the refill
        assert _metric(server, 'corral_warm_creates_total{result="miss"}') == 1
        _wait_ready(server, 2)
        second = Sandbox.create("svc", **where)
        assert _metric(server, 'corral_warm_creates_total{result="hit"}') == 1
        assert second.files.read("conf.txt") == b"layer"
        assert second.commands.run(f"pgrep -f {marker} >/dev/null && echo running").stdout == "running\n"
        first.files.write("mine.txt", "first")
        assert [entry.name for entry in second.files.list()] == ["conf.txt"]  # a fresh sandbox, not a shared one
        assert second.run("x = 1").ok and second.run("print(x)").stdout == "1\n"
        with_env = Sandbox.create("svc", **where, env={"OWN": "1"})  # its own env: started cold, as asked
        assert with_env.run("import os; print(os.environ['OWN'])").stdout == "1\n"
        assert _metric(server, 'corral_warm_creates_total{result="hit"}') == 1
        _wait_ready(server, 2)
        assert len(host_processes_with(marker)) >= 4  # two handed out, two ready
    finally:
        server.stop()  # graceful: warm sandboxes are closed with the live ones
    deadline = time.monotonic() + WAIT_S
    while host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not host_processes_with(marker)


async def test_the_least_recently_used_template_gives_its_warm_sandboxes_up(tmp_path):
    service = await SandboxService(ServiceConfig(tmp_path, warm_per_template=1)).start()
    service.warm.max_templates = 1
    try:
        first, _ = await service.create("owner", CreateSandbox(template="python"))  # cold; python's refill starts
        deadline = time.monotonic() + WAIT_S
        while service.warm.ready_count() < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        [warm_python] = [sandbox for ready in service.warm._ready.values() for sandbox in ready]
        await service.create("owner", CreateSandbox(template="shell"))  # a second template evicts the first
        assert warm_python.closed
        deadline = time.monotonic() + WAIT_S
        while service.warm.ready_count() < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        [warm_shell] = [sandbox for ready in service.warm._ready.values() for sandbox in ready]
        assert warm_shell.language == "shell"
    finally:
        await service.close()
