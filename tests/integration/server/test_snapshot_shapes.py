"""Snapshots of homes of every shape: sparse files, deep trees, hard links; bounded in memory and size.

Attack tests. Before the fix, with ``disk_mb=16`` a 600 MiB sparse file was stored as 600 MiB
(the server's memory grew by as much: files were read whole) and the resume failed for lack of
space; 640 nested directories paused but the resume answered 422 (every mkdir in one command
over the protocol's code limit); a 15 MB file and a hard link to it in a 24 MB home were
restored twice ("No space left"). In each case the paused sandbox had stopped: its data was lost.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from corral.sandbox import AsyncSandbox
from corral.hosted.blobs import BlobStore
from corral.hosted.snapshot_steps import FilesStep
from serverprocess import ServerProcess

pytestmark = pytest.mark.sandbox

MIB = 1024 * 1024


def _command(api: httpx.Client, sandbox_id: str, cmd: str) -> str:
    result = api.post(f"/sandboxes/{sandbox_id}/commands", json={"cmd": cmd, "timeout": 120}).json()
    assert result["exit_code"] == 0, result
    return result["stdout"]


def _pause_and_resume(api: httpx.Client, sandbox_id: str) -> tuple[dict, str]:
    paused = api.post(f"/sandboxes/{sandbox_id}/pause")
    assert paused.status_code == 201, paused.text
    resumed = api.post(f"/snapshots/{paused.json()['id']}/resume", json={})
    assert resumed.status_code == 201, resumed.text
    return paused.json(), resumed.json()["id"]


def _blob_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in data_dir.rglob("blobs/*/*"))


def _peak_rss_mib(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_a_sparse_file_stays_sparse_and_bounded(fresh_server: ServerProcess):
    with fresh_server.client() as api:
        sandbox_id = api.post("/sandboxes", json={"limits": {"disk_mb": 16}}).json()["id"]
        _command(api, sandbox_id, "truncate -s 600M sparse.bin && printf 'tail' >> sparse.bin && echo kept > notes.txt")
        _, resumed = _pause_and_resume(api, sandbox_id)
        assert _blob_bytes(fresh_server.data_dir) < 16 * MIB, "the snapshot stored more than the sandbox's disk"
        assert _peak_rss_mib(fresh_server) < 400, "the server held the file in memory"
        listing = _command(api, resumed, "stat -c '%s %b %B' sparse.bin; tail -c 4 sparse.bin; echo; cat notes.txt")
        size, blocks, block_size, *_ = listing.split()
        assert int(size) == 600 * MIB + 4 and int(blocks) * int(block_size) < MIB  # still sparse
        assert listing.split("\n")[1:3] == ["tail", "kept"]
        api.delete(f"/sandboxes/{resumed}")


def test_a_deep_tree_of_long_names_resumes(fresh_server: ServerProcess):
    with fresh_server.client() as api:
        sandbox_id = api.post("/sandboxes", json={}).json()["id"]
        _command(api, sandbox_id, "d=deep; mkdir $d; for i in $(seq 639); do d=$d/n$(printf %04d $i); done; "
                                  "mkdir -p $d && echo bottom > $d/leaf.txt && chmod 700 deep")
        _, resumed = _pause_and_resume(api, sandbox_id)
        found = _command(api, resumed, "find deep -name leaf.txt -exec cat {} +; find deep -type d | wc -l; "
                                       "stat -c %a deep")
        assert found.split() == ["bottom", "640", "700"]
        api.delete(f"/sandboxes/{resumed}")


def test_hard_links_are_restored_once(fresh_server: ServerProcess):
    with fresh_server.client() as api:
        sandbox_id = api.post("/sandboxes", json={"limits": {"disk_mb": 24}}).json()["id"]
        digest = _command(api, sandbox_id, "head -c 15M /dev/urandom > big && ln big link && ln -s big soft && "
                                           "chmod 640 big && sha256sum < big")
        _, resumed = _pause_and_resume(api, sandbox_id)
        after = _command(api, resumed, "sha256sum < link; stat -c '%h %a %i' big link; readlink soft")
        lines = after.splitlines()
        assert lines[0] == digest.strip()
        assert lines[1].split()[:2] == ["2", "640"] and lines[1].split()[2] == lines[2].split()[2]  # one inode
        assert lines[3] == "big"
        api.delete(f"/sandboxes/{resumed}")


def test_a_path_too_long_to_restore_is_refused_and_the_sandbox_keeps_running(fresh_server: ServerProcess):
    """tar could archive it but not extract it: the pause is refused before anything stops (a guard)."""
    with fresh_server.client() as api:
        sandbox_id = api.post("/sandboxes", json={}).json()["id"]
        _command(api, sandbox_id, "mkdir far && cd far && for i in $(seq 30); do mkdir $(printf 'x%.0s' $(seq 200)) "
                                  "&& cd x*; done && echo deep > f")
        refused = api.post(f"/sandboxes/{sandbox_id}/pause")
        assert refused.status_code == 422 and "too long" in refused.text or "shorten it" in refused.text, refused.text
        assert api.get(f"/sandboxes/{sandbox_id}").json()["state"] == "running"
        assert _command(api, sandbox_id, "echo still here") == "still here\n"
        api.delete(f"/sandboxes/{sandbox_id}")


async def test_a_part_of_the_older_format_still_restores(tmp_path):
    """Snapshots and layers stored before tar archives (one blob per file) restore; bounded commands
    for any number of directories (640 nested ones here, once over the protocol's code limit)."""
    blobs = BlobStore(tmp_path / "blobs")
    deep = "/".join(["deep", *(f"n{index:04d}" for index in range(1, 640))])
    entries = [{"path": "/".join(deep.split("/")[:depth]), "kind": "dir", "mode": 0o755} for depth in range(1, 641)]
    entries[0]["mode"] = 0o700
    entries += [
        {"path": f"{deep}/leaf.txt", "kind": "file", "mode": 0o640, "digest": blobs.put(b"bottom"), "size": 6},
        {"path": "notes.txt", "kind": "file", "mode": 0o600, "digest": blobs.put(b"kept"), "size": 4},
        {"path": "link", "kind": "symlink", "target": "notes.txt"},
    ]
    async with AsyncSandbox("python") as sandbox:
        await FilesStep().restore(sandbox, blobs, {"root": "/home/user", "entries": entries})
        result = await sandbox.commands.run(f"cat {deep}/leaf.txt link; stat -c %a deep {deep}/leaf.txt notes.txt; "
                                            "find deep -type d | wc -l")
    assert result.stdout.split() == ["bottomkept700", "640", "600", "640"], result  # cat adds no newline
    assert FilesStep.digests({"entries": entries}) == [entries[-3]["digest"], entries[-2]["digest"]]
