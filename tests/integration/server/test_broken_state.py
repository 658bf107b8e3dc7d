"""A hosted sandbox whose agent died is Broken: recorded, listed, refused, and only killed (local and remote)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time

import pytest

from corral import Sandbox
from corral.contract.schemas import CreateSandbox
from corral.errors import SandboxClosedError, SandboxCrashedError
from corral.hosted.service import ServiceConfig, SandboxService

pytestmark = pytest.mark.sandbox


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Uid:")).split()[1])


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _kill_the_agent_of(marker: str) -> list[int]:
    """SIGKILL, from the host, the sandbox processes above the one whose command line has ``marker``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if marker.encode() not in cmdline.read() or _uid(int(entry)) == os.getuid():
                        continue
                uid, victims, parent = _uid(int(entry)), [], _parent(int(entry))
                while parent > 1 and _uid(parent) == uid:  # the agent (and what it forked on the way)
                    victims.append(parent)
                    parent = _parent(parent)
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                return victims
            except (OSError, ValueError, StopIteration):
                continue
        time.sleep(0.05)
    return []


def test_a_sandbox_whose_agent_died_is_broken_listed_and_can_only_be_killed(where):
    tag = secrets.token_hex(4)
    sandbox = Sandbox.create(**where, timeout=600, metadata={"case": f"broken-{tag}"})
    try:
        marker = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6):06d}"
        sandbox.commands.run(f"exec sleep {marker}", background=True)
        assert _kill_the_agent_of(marker), "no sandbox process ran the marker"
        with pytest.raises(SandboxCrashedError):
            sandbox.run("print(1)")
        assert sandbox.refresh().state == "broken"
        assert [info.id for info in Sandbox.list(**where, state="broken", metadata={"case": f"broken-{tag}"})] == [
            sandbox.id]
        assert [(event.kind, event.state) for event in sandbox.events()][-1] == ("crashed", "broken")
        for refused in (lambda: sandbox.run("print(1)"), lambda: sandbox.commands.run("true"),
                        lambda: sandbox.files.read("x"), lambda: sandbox.set_timeout(60), sandbox.pause):
            with pytest.raises(SandboxClosedError, match="broken"):
                refused()
    finally:
        sandbox.kill()
    assert sandbox.refresh().state == "stopped"
    assert [(event.kind, event.state) for event in sandbox.events()][-2:] == [("crashed", "broken"),
                                                                             ("killed", "stopped")]
    sandbox.kill()  # idempotent
    assert sandbox.refresh().state == "stopped"


async def test_a_create_whose_agent_dies_half_way_is_broken_until_its_time_to_live_passes(tmp_path):
    service = await SandboxService(ServiceConfig(tmp_path, reap_interval_s=3600)).start()  # reaped below
    marker = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6):06d}"

    async def restore(sandbox) -> None:  # runs after the start, before the template's start_cmd
        await sandbox.commands.run(f"exec sleep {marker}", background=True)
        assert await asyncio.to_thread(_kill_the_agent_of, marker)
        await sandbox.run("1")

    try:
        with pytest.raises(SandboxCrashedError):
            await service.create("owner", CreateSandbox(timeout=1, metadata={"case": "half"}), restore=restore)
        [info] = service.list("owner", metadata={"case": "half"})
        assert info.state == "broken" and not service.live  # torn down at once; the record stays
        assert [(event.kind, event.state) for event in service.records.events(info.id)] == [
            ("created", "creating"), ("start_failed", "broken")]
        with pytest.raises(SandboxClosedError, match="broken"):
            service.set_timeout(info.id, "owner", 600)
        await asyncio.sleep(1.1)
        assert await service.reap() == 1
        assert service.get(info.id, "owner").state == "stopped"
        assert service.records.events(info.id)[-1].kind == "expired"
    finally:
        await service.close()
