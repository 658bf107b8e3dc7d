"""``corral serve`` prints a key on first start; ``corral keys create/list/revoke`` manage keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from serverprocess import START_DEADLINE_S, free_port

pytestmark = pytest.mark.sandbox


def _corral(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corral.cli", *args], capture_output=True, text=True)


def test_first_start_creates_and_prints_a_key_and_keys_commands_manage_it(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "corral.cli", "serve", "--port", str(port), "--data-dir",
                                   str(tmp_path), "--log-level", "info"], stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        printed = re.search(r"export CORRAL_API_KEY=(ck_\S+)", log.read_text())
        assert printed, log.read_text()
        first = printed.group(1)
        url = f"http://127.0.0.1:{port}/v1/sandboxes"
        assert httpx.get(url, headers={"Authorization": f"Bearer {first}"}).status_code == 200
        made = httpx.post(url, json={}, headers={"Authorization": f"Bearer {first}"}).json()
        httpx.delete(f"{url}/{made['id']}", headers={"Authorization": f"Bearer {first}"})

        created = _corral("keys", "create", "--name", "ci", "--data-dir", str(tmp_path))
        second = created.stdout.strip()
        assert created.returncode == 0 and second.startswith("ck_") and second != first
        assert httpx.get(url, headers={"Authorization": f"Bearer {second}"}).status_code == 200
        listed = _corral("keys", "list", "--data-dir", str(tmp_path)).stdout
        assert [line.split("\t")[1] for line in listed.splitlines()] == ["initial", "ci"]
        assert first not in listed and second not in listed  # secrets are never shown again
        key_id = second.split("_")[1]
        assert _corral("keys", "revoke", key_id, "--data-dir", str(tmp_path)).returncode == 0
        assert httpx.get(url, headers={"Authorization": f"Bearer {second}"}).status_code == 401
        assert _corral("keys", "revoke", key_id, "--data-dir", str(tmp_path)).returncode == 1
    finally:
        server.terminate()
        server.wait(30)
    after_the_print = log.read_text().split("export CORRAL_API_KEY=", 1)[1].split("\n", 1)[1]
    assert first not in after_the_print and second not in after_the_print  # keys are never logged
    assert made["access_token"] not in after_the_print
    assert f'"sandbox_id": "{made["id"]}", "kind": "started"' in after_the_print  # lifecycle events are logged


def test_serve_refuses_to_start_where_no_sandbox_can_start(tmp_path):
    """A private (0700) data directory: the sandbox uid cannot reach the runtime directory in it.

    Before the fix the server started, and then every create failed with "no isolation level works".
    """
    private = tmp_path / "private-data"
    private.mkdir(mode=0o700)
    if os.geteuid() != 0:
        pytest.skip("only a server run as root drops sandboxes to another uid")
    result = subprocess.run([sys.executable, "-m", "corral.cli", "serve", "--port", str(free_port()), "--isolation",
                             "process", "--data-dir", str(tmp_path / "state")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "CORRAL_DATA_DIR": str(private)})
    assert result.returncode != 0
    assert "cannot start sandboxes here" in result.stderr and str(private) in result.stderr, result.stderr
