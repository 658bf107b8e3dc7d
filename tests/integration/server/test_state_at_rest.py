"""Secrets at rest: no state file of the server is readable by the sandboxes' host uid (65534).

Attack test: before the fix ``corral.db`` (sandboxes' env values, template contents, key
hashes) and the blobs (snapshot and template files) were mode 0644 under 0755 directories, so
uid 65534, which every process sandbox runs as on the host, could read every tenant's secrets.
Also: an existing data directory in the older layout is moved into the private part, nothing lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from corral.host.data_dir import data_dir
from corral.hosted.blobs import BlobStore
from corral.hosted.database import DB_FILE, Database
from corral.hosted.keys import KeyStore
from serverprocess import ServerProcess

pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")]

SECRET = f"secret-{uuid.uuid4().hex}"
#: Reads every path given on stdin; prints those it could open (run as the sandbox uid).
_READER = """
import os, sys
for path in sys.stdin.read().split("\\0")[:-1]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
    except OSError:
        continue
    print(path)
"""


@pytest.fixture
def state_dir():
    """A state directory where the real one lives: under corral's data directory, traversable by 65534."""
    root = data_dir() / f"test-state-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, mode=0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _readable_by_sandbox_uid(paths: list[Path]) -> list[str]:
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                             "-I", "-c", _READER], input="".join(f"{path}\0" for path in paths),
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.split()


def test_no_state_file_is_readable_by_the_sandbox_uid(state_dir: Path):
    server = ServerProcess(state_dir).start()
    try:
        with server.client() as api:
            secret_env = api.post("/sandboxes", json={"env": {"TOKEN": SECRET}}).json()
            built = api.post("/templates", json={"name": "secret", "steps": [{"files": {"key.txt": SECRET}}]})
            assert built.status_code in (200, 201), built.text
            paused = api.post("/sandboxes", json={}).json()["id"]
            api.put(f"/sandboxes/{paused}/files", params={"path": "notes.txt"}, content=SECRET.encode())
            assert api.post(f"/sandboxes/{paused}/pause").status_code == 201
            api.delete(f"/sandboxes/{secret_env['id']}")
    finally:
        server.stop()
    paths = []
    holding_secret = []
    for directory, subdirs, files in os.walk(state_dir):
        for name in [*subdirs, *files]:
            path = Path(directory) / name
            paths.append(path)
            if path.is_file() and SECRET.encode() in path.read_bytes():
                holding_secret.append(path)
    assert any(path.name == DB_FILE for path in paths) and len(holding_secret) >= 2, (paths, holding_secret)
    private = [path for path in paths if path.name != "server.log"]
    assert not _readable_by_sandbox_uid(private), "uid 65534 can read the server's state"


def test_an_older_layout_is_moved_into_the_private_part(state_dir: Path):
    database = Database(state_dir / DB_FILE)  # the layout of corral before this fix
    _, key = KeyStore(database).create("old")
    database.close()
    os.chmod(state_dir / DB_FILE, 0o644)
    digest = BlobStore(state_dir / "blobs").put(b"kept across the move")
    server = ServerProcess(state_dir, key=key).start()
    try:
        with server.client() as api:
            assert api.get("/sandboxes").status_code == 200  # the old key still works
    finally:
        server.stop()
    private = state_dir / "private"
    assert private.stat().st_mode & 0o777 == 0o700
    assert not (state_dir / DB_FILE).exists() and not (state_dir / "blobs").exists()
    assert BlobStore(private / "blobs").get(digest) == b"kept across the move"
    assert not _readable_by_sandbox_uid([private / DB_FILE, private / "blobs" / digest[:2] / digest])
