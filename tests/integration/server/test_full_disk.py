"""A full data disk: a clear 507 (StorageFullError), nothing half-written left, later calls that fit succeed.

Attack test: before the fix a pause on a small file system answered 500 (OSError) and left a
partial ``blobs/xx/.tmp-*`` file (and the blobs it had stored) behind, so later pauses that would
fit failed too, until a collection an hour later; a create on a full disk answered 500 too.
The data directory is a small tmpfs mounted by the test (as root), unmounted after.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from serverprocess import ServerProcess

pytestmark = [pytest.mark.sandbox, pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MiB file system for the server's state."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _debris(state: Path) -> list[Path]:
    return list(state.rglob(".tmp-*"))


def _blob_bytes(state: Path) -> int:
    return sum(path.stat().st_size for path in state.rglob("blobs/*/*"))


def _fill(path: Path) -> None:
    with open(path, "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def test_a_full_data_disk_answers_507_and_leaves_nothing(small_disk: Path):
    server = ServerProcess(small_disk).start()
    try:
        with server.client() as api:
            sandbox_id = api.post("/sandboxes", json={}).json()["id"]
            command = {"cmd": "head -c 8M /dev/urandom > big", "timeout": 60}
            assert api.post(f"/sandboxes/{sandbox_id}/commands", json=command).json()["exit_code"] == 0
            before = _blob_bytes(small_disk)
            refused = api.post(f"/sandboxes/{sandbox_id}/pause")
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"]["type"] == "StorageFullError"
            assert not _debris(small_disk), "a partial blob was left behind"
            assert _blob_bytes(small_disk) == before, "the failed pause's blobs were left behind"
            assert api.get(f"/sandboxes/{sandbox_id}").json()["state"] == "running"
            command = {"cmd": "rm big && echo small > notes.txt"}
            assert api.post(f"/sandboxes/{sandbox_id}/commands", json=command).json()["exit_code"] == 0
            paused = api.post(f"/sandboxes/{sandbox_id}/pause")
            assert paused.status_code == 201, paused.text  # it fits, and nothing of the failed one is in the way

            running = api.get("/health").json()["sandboxes_running"]
            _fill(small_disk / "filler")
            try:
                full = api.post("/sandboxes", json={})
                assert full.status_code == 507 and full.json()["error"]["type"] == "StorageFullError", full.text
                assert api.get("/health").json()["sandboxes_running"] == running
            finally:
                (small_disk / "filler").unlink()
            assert api.post("/sandboxes", json={}).status_code == 201
    finally:
        server.stop()
    assert not _debris(small_disk)
