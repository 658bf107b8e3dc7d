"""Load on loopback: 50 sandboxes created, used and killed by 10 concurrent clients; nothing fails or lingers."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from corral import Sandbox

from serverprocess import host_processes_with

#: Generous bound for the host to reap killed processes (a poll, not a timing assertion).
WAIT_S = 30.0

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SANDBOXES = 50
CLIENTS = 10


def test_fifty_sandboxes_ten_clients(fresh_server):
    where = {"server": fresh_server.url, "api_key": fresh_server.key}
    marker = f"corral-load-{uuid.uuid4().hex}"

    def one(index: int) -> str:
        sandbox = Sandbox.create(**where, timeout=600, metadata={"load": marker})
        try:
            sandbox.commands.run(f"exec -a {marker} sleep 1000", background=True)
            assert sandbox.run(f"x = {index}").ok
            assert sandbox.run("print(x * 2)").stdout == f"{index * 2}\n"
            sandbox.files.write("in.txt", f"{index}")
            assert sandbox.commands.run("cat in.txt").stdout == f"{index}"
        finally:
            sandbox.kill()
        return sandbox.id

    with ThreadPoolExecutor(CLIENTS) as clients:
        ids = list(clients.map(one, range(SANDBOXES)))
    assert len(set(ids)) == SANDBOXES
    listed = Sandbox.list(**where, metadata={"load": marker})
    assert len(listed) == SANDBOXES and {info.state for info in listed} == {"stopped"}
    deadline = time.monotonic() + WAIT_S
    while host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not host_processes_with(marker), "a sandbox process outlived its kill"
    metrics = httpx.get(f"{fresh_server.url}/metrics", headers={"Authorization": f"Bearer {fresh_server.key}"}).text
    assert "corral_sandboxes_live 0.0" in metrics
