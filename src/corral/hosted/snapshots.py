"""Pause and resume: continuation snapshots of hosted sandboxes.

Pause waits for the sandbox's operations in flight, refuses new ones, runs
every :class:`SnapshotStep` (each stores its blobs durably), stores the
manifest, and only then records the snapshot and the Paused state in one
transaction and stops the sandbox. If any step fails the sandbox keeps running
untouched. Resume starts a new sandbox with the snapshot's template and
options and restores every part; the paused sandbox becomes Stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from pathlib import Path

from corral.backends import registry
from corral.contract.schemas import (
    CreatedSandbox,
    CreateSandbox,
    ResumeSnapshot,
    SnapshotInfo,
    TemplateDefinition,
)
from corral.contract.states import SandboxState
from corral.errors import CorralError, InvalidInputError, SandboxClosedError
from corral.hosted.blobs import storage_error
from corral.hosted.records import require_state, snapshot_info
from corral.hosted.service import SandboxService
from corral.hosted.snapshot_steps import DEFAULT_STEPS, FilesStep, SnapshotStep
from corral.hosted.templates import ResolvedTemplate

MANIFEST_VERSION = 1


class SnapshotService:
    """Pause, resume, list and delete snapshots of ``service``'s sandboxes."""

    def __init__(self, service: SandboxService, steps: tuple[SnapshotStep, ...] = DEFAULT_STEPS):
        self.service = service
        self.steps = {step.name: step for step in steps}

    async def pause(self, sandbox_id: str, owner: str | None) -> SnapshotInfo:
        """Capture the sandbox into a snapshot, then stop it; the snapshot is durable when this returns."""
        service = self.service
        row = service.records.sandbox_row(sandbox_id, owner)
        require_state(row, SandboxState.RUNNING)
        live = service.require_live(sandbox_id)
        async with live.lock:
            if live.pausing or sandbox_id not in service.live:
                require_state(service.records.sandbox_row(sandbox_id, None), SandboxState.RUNNING)
            live.pausing = True
            started = time.monotonic()
            snapshot_id = f"snap_{secrets.token_hex(8)}"
            try:
                # a failed pause leaves nothing: the blobs it created go again, the sandbox keeps running
                with service.blobs.batch() as blobs:
                    async with live.idle:
                        await live.idle.wait_for(lambda: live.operations == 0)
                    parts = {name: await step.capture(live.sandbox, blobs) for name, step in self.steps.items()}
                    manifest = {"version": MANIFEST_VERSION, "template": row["template"],
                                "spec": json.loads(row["spec_json"]), "parts": parts}
                    digest = await asyncio.to_thread(blobs.put, json.dumps(manifest, sort_keys=True).encode())
                    # memory last, where the level can capture it: it stops the sandbox (files are captured)
                    memory = registry.resolve(live.sandbox.isolation).captures_memory
                    if memory:
                        await live.sandbox.pause_memory(self.memory_dir(snapshot_id))
                    file_count, size_bytes = FilesStep.summary(parts["files"])
                    record = {
                        "id": snapshot_id, "owner": row["owner"], "sandbox_id": sandbox_id,
                        "manifest_digest": digest, "template": row["template"], "spec_json": row["spec_json"],
                        "metadata_json": row["metadata_json"], "file_count": file_count, "size_bytes": size_bytes,
                        "memory": int(memory), "created_at": time.time(),
                    }
                    if not service.records.transition(
                        sandbox_id, SandboxState.PAUSED, "paused",
                        f"paused into {snapshot_id}: {file_count} files, {size_bytes} bytes, "
                        f"in {time.monotonic() - started:.3f} s", snapshot=record,
                    ):
                        raise SandboxClosedError(f"sandbox {sandbox_id} was stopped while it was being paused")
            except BaseException as exc:
                live.pausing = False
                shutil.rmtree(self.memory_dir(snapshot_id), ignore_errors=True)
                error = storage_error(exc, "saving the snapshot") if isinstance(exc, OSError) else exc
                if isinstance(error, CorralError):
                    with contextlib.suppress(CorralError):  # the record may be what failed (a full disk)
                        service.records.note(sandbox_id, "pause_failed", f"pause failed: {error}")
                if error is not exc:
                    raise error from exc
                raise
            service.live.pop(sandbox_id, None)
            await live.sandbox.close()
        service.stats["paused"] += 1
        return self.get(snapshot_id, owner)

    async def resume(self, snapshot_id: str, owner: str | None, request: ResumeSnapshot) -> CreatedSandbox:
        """A new running sandbox with everything the snapshot captured put back."""
        service = self.service
        row = service.records.snapshot_row(snapshot_id, owner)
        manifest = json.loads(await asyncio.to_thread(service.blobs.get, row["manifest_digest"]))
        if manifest.get("version") != MANIFEST_VERSION:
            raise InvalidInputError(f"snapshot {snapshot_id} has manifest version {manifest.get('version')}, "
                                    f"which this corral cannot read")
        unknown = set(manifest["parts"]) - set(self.steps)
        if unknown:
            raise InvalidInputError(f"snapshot {snapshot_id} holds parts this server cannot restore: "
                                    f"{', '.join(sorted(unknown))}")
        spec = manifest["spec"]
        definition = TemplateDefinition.model_validate(spec["template"]) if spec.get("template") else None
        # the snapshot holds the whole home directory (the template's layer included): only the
        # language, env and start/ready commands come from the template, as they were at creation
        template = ResolvedTemplate(manifest["template"], spec["language"], definition)
        create = CreateSandbox(
            template=manifest["template"], timeout=request.timeout, env=spec.get("env", {}),
            limits=spec.get("limits", {}),
            metadata=request.metadata if request.metadata is not None else json.loads(row["metadata_json"]),
        )

        async def restore(sandbox) -> None:
            for name, part in manifest["parts"].items():
                await self.steps[name].restore(sandbox, service.blobs, part)

        memory = self.memory_dir(snapshot_id) if row["memory"] and service.captures_memory() else None
        try:
            created, _ = await service.create(row["owner"], create, resumed_from=snapshot_id, template=template,
                                              restore=restore, memory_snapshot=memory)
        except CorralError as exc:
            service.records.note(row["sandbox_id"], "resume_failed", f"resuming {snapshot_id} failed: {exc}")
            raise
        service.records.note(created.id, "resumed", f"restored {row['file_count']} files from {snapshot_id}")
        service.records.transition(row["sandbox_id"], SandboxState.STOPPED, "resumed",
                                   f"continued by sandbox {created.id}")
        service.stats["resumed"] += 1
        return created

    def get(self, snapshot_id: str, owner: str | None) -> SnapshotInfo:
        """A snapshot's record."""
        return snapshot_info(self.service.records.snapshot_row(snapshot_id, owner))

    def list(self, owner: str | None) -> list[SnapshotInfo]:
        """``owner``'s snapshots, newest first."""
        return [snapshot_info(row) for row in self.service.records.snapshots(owner)]

    async def delete(self, snapshot_id: str, owner: str | None) -> None:
        """Forget a snapshot, and collect the blobs nothing references any more (after the grace period)."""
        self.service.records.snapshot_row(snapshot_id, owner)
        self.service.records.delete_snapshot(snapshot_id)
        await asyncio.to_thread(shutil.rmtree, self.memory_dir(snapshot_id), True)
        await self.service.collect_blobs()

    def memory_dir(self, snapshot_id: str) -> Path:
        """Where a snapshot's memory (a microVM continuation) is kept."""
        return self.service.state.memory / snapshot_id
