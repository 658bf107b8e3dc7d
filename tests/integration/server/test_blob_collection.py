"""Deleting snapshots frees the blobs nothing else references; shared and recent blobs stay."""

from __future__ import annotations

import pytest

from corral.contract.schemas import CreateSandbox, ResumeSnapshot
from corral.hosted.service import SandboxService, ServiceConfig
from corral.hosted.snapshots import SnapshotService

pytestmark = pytest.mark.sandbox


def _blob_files(service: SandboxService) -> set[str]:
    return {path.name for path in service.blobs.root.glob("??/*")}


async def _paused(service: SandboxService, snapshots: SnapshotService, files: dict[str, bytes]) -> str:
    created, sandbox = await service.create("owner", CreateSandbox())
    for path, data in files.items():
        await sandbox.files.write(path, data)
    return (await snapshots.pause(created.id, "owner")).id


async def test_deleting_snapshots_collects_only_unreferenced_blobs(tmp_path):
    service = await SandboxService(ServiceConfig(tmp_path, blob_grace_s=0)).start()
    snapshots = SnapshotService(service)
    try:
        kept = await _paused(service, snapshots, {"shared.txt": b"shared", "kept.txt": b"only in the kept one"})
        before = _blob_files(service)
        dropped = await _paused(service, snapshots, {"shared.txt": b"shared", "gone.txt": b"only in the dropped one"})
        added = _blob_files(service) - before
        assert len(added) == 2  # its own file and its manifest; the shared file is stored once
        await snapshots.delete(dropped, "owner")
        assert _blob_files(service) == before
        created = await snapshots.resume(kept, "owner", ResumeSnapshot())
        async with service.use(created.id) as sandbox:
            assert await sandbox.files.read("shared.txt") == b"shared"
            assert await sandbox.files.read("kept.txt") == b"only in the kept one"
    finally:
        await service.close()


async def test_recent_blobs_are_kept_through_the_grace_period(tmp_path):
    service = await SandboxService(ServiceConfig(tmp_path)).start()  # the default grace: an hour
    snapshots = SnapshotService(service)
    try:
        dropped = await _paused(service, snapshots, {"a.txt": b"a"})
        before = _blob_files(service)
        await snapshots.delete(dropped, "owner")
        assert _blob_files(service) == before
    finally:
        await service.close()
