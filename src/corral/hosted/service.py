"""The sandbox service: one command surface for hosted sandboxes, used by the HTTP routes and local mode.

It owns the live :class:`corral.AsyncSandbox` objects of one process, records
every lifecycle transition in the database, reaps sandboxes whose time to live
passed, and at start marks dead what a previous process left running (its
sandboxes died with it; the process backend kills any orphan it finds).
Paused sandboxes live only as snapshots, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.backends import registry
from corral.contract.schemas import CreatedSandbox, CreateSandbox, SandboxInfo
from corral.contract.states import UNFINISHED_STATES, SandboxState
from corral.errors import (
    CorralError,
    LimitExceededError,
    SandboxClosedError,
    SandboxCrashedError,
    SandboxStartError,
)
from corral.host.sandbox_names import new_name, owner_alive
from corral.hosted.blobs import BlobStore
from corral.hosted.database import Database
from corral.hosted.keys import KeyStore, new_sandbox_token
from corral.hosted.records import Records, require_state, sandbox_info
from corral.hosted.snapshot_steps import DEFAULT_STEPS, FilesStep
from corral.hosted.state_dir import open_state_dir
from corral.hosted.templates import ResolvedTemplate, TemplateStore, sandbox_env
from corral.hosted.warm import WarmSandboxes
from corral.lease import wait_for_teardowns
from corral.sandbox import AsyncSandbox

log = logging.getLogger("corral.server")

#: Snapshot steps by part name (what a manifest's parts reference).
STEPS = {step.name: step for step in DEFAULT_STEPS}
#: Pause between two tries of a template's ready_cmd.
READY_POLL_S = 0.05


@dataclass(frozen=True)
class ServiceConfig:
    """Where the service keeps its state, and its limits."""

    data_dir: Path
    #: Sandboxes one owner may have in Creating, Running or Stopping at once.
    max_sandboxes_per_owner: int = 20
    #: How often expired sandboxes are looked for.
    reap_interval_s: float = 1.0
    isolation: str = "auto"
    #: Sandboxes kept started and prepared per template used (0: every create is a cold start).
    warm_per_template: int = 0
    #: Unreferenced blobs are collected only once untouched this long (a pause in progress is safe).
    blob_grace_s: float = 3600.0
    #: Where sandboxes start: None for this machine, else a factory with ``start``, ``new(language, **options)``,
    #: ``placed(db, sandbox_id, sandbox)`` and ``close`` (corral.cluster.served.ClusterSandboxes: a Ray cluster).
    sandboxes: Any = None


@dataclass
class LiveSandbox:
    """A running sandbox of this process, and the operations using it."""

    sandbox: AsyncSandbox
    owner: str
    operations: int = 0
    pausing: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    idle: asyncio.Condition = field(default_factory=asyncio.Condition)


class SandboxService:
    """Create, use, pause, resume and kill sandboxes; everything is recorded."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.state = open_state_dir(config.data_dir)
        self.db = Database(self.state.database)
        self.records = Records(self.db)
        self.keys = KeyStore(self.db)
        self.blobs = BlobStore(self.state.blobs)
        self.templates = TemplateStore(self.db)
        self.live: dict[str, LiveSandbox] = {}
        self.stats = {"created": 0, "start_failures": 0, "killed": 0, "expired": 0, "paused": 0, "resumed": 0,
                      "crashed": 0, "recovered_dead": 0}
        self.warm = WarmSandboxes(config.warm_per_template, self._prepared) if config.warm_per_template else None
        self._process_tag = new_name()
        self._creating: dict[str, int] = {}
        self._reaper: asyncio.Task | None = None

    async def start(self) -> SandboxService:
        """Recover from a previous process, collect unreferenced blobs, then start reaping expired sandboxes."""
        self.recover()
        await self.collect_blobs()
        if self.config.sandboxes is not None:
            await self.config.sandboxes.start()
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap_forever())
        return self

    def recover(self) -> int:
        """Mark Stopped every live or broken sandbox whose owning process is gone; returns how many."""
        dead = 0
        for state in UNFINISHED_STATES:
            for row in self.records.sandboxes(None, state):
                if row["process_tag"] != self._process_tag and not owner_alive(row["process_tag"]):
                    if self.records.transition(row["id"], SandboxState.STOPPED, "died",
                                               "the corral process that ran it exited; its processes were killed"):
                        dead += 1
        self.stats["recovered_dead"] += dead
        if dead:
            log.info("recovery: %d sandbox(es) of a previous corral process marked stopped", dead)
        return dead

    async def collect_blobs(self) -> tuple[int, int]:
        """Remove blobs no snapshot or template references (after the grace period); (files, bytes)."""
        keep = set()
        for digest in self.records.manifest_digests():
            keep.add(digest)
            try:
                manifest = json.loads(await asyncio.to_thread(self.blobs.get, digest))
            except (OSError, ValueError):
                log.warning("manifest %s is missing or unreadable; collection skipped", digest)
                return 0, 0
            for name, part in manifest["parts"].items():
                keep.update(STEPS[name].digests(part))
        removed, freed = await asyncio.to_thread(self.blobs.collect, keep, self.config.blob_grace_s)
        if removed:
            log.info("collected %d unreferenced blobs (%d bytes)", removed, freed)
        return removed, freed

    async def close(self) -> None:
        """Stop reaping and kill every live sandbox of this process (paused ones stay resumable)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self.warm is not None:
            await self.warm.close()
        for sandbox_id in list(self.live):
            await self._stop(sandbox_id, "shutdown", "the service shut down")
        await wait_for_teardowns()
        if self.config.sandboxes is not None:
            await self.config.sandboxes.close()
        self.db.close()

    # --- control plane -------------------------------------------------------------

    async def create(self, owner: str, request: CreateSandbox, *, resumed_from: str | None = None,
                     template: ResolvedTemplate | None = None,
                     restore: Callable[[AsyncSandbox], Awaitable[None]] | None = None,
                     memory_snapshot: Path | None = None) -> tuple[CreatedSandbox, AsyncSandbox]:
        """Start a sandbox from a template; Running when it returns. Raises LimitExceededError at the quota.

        ``template`` replaces the lookup of ``request.template`` (a resume brings its own);
        ``restore`` runs after the template's layer and before its start_cmd. With
        ``memory_snapshot`` the sandbox continues from it instead: layer, files and the
        start_cmd's processes are all in it, so neither runs.
        """
        template = template or self.templates.resolve(owner, request.template)
        self._check_quota(owner)  # before anything is recorded
        limits = request.limits.model_dump(exclude_none=True)
        sandbox_id = f"sbx_{secrets.token_hex(8)}"
        token, token_hash = new_sandbox_token(sandbox_id)
        # everything a resume needs, so that a snapshot does not depend on the template staying defined
        definition = template.definition.model_dump(mode="json") if template.definition is not None else None
        self.records.insert_sandbox(
            sandbox_id=sandbox_id, owner=owner, template=request.template,
            spec={"language": template.language, "template": definition,
                  **request.model_dump(mode="json", include={"env", "limits"})},
            metadata=request.metadata, token_hash=token_hash, process_tag=self._process_tag,
            expires_at=time.time() + request.timeout, resumed_from=resumed_from,
        )
        release = self.reserve(owner)  # no await since the check: the count cannot have moved
        sandbox = None
        try:  # all or nothing: whatever fails once the sandbox started also stops it
            if self.warm is not None and restore is None and not request.env and not limits:
                sandbox = await self.warm.take(template)
            if sandbox is None:
                sandbox = self._new_sandbox(template.language, isolation=self.config.isolation,
                                            env={**sandbox_env(template), **request.env}, **limits)
                await sandbox.start(memory_snapshot=memory_snapshot)
                if memory_snapshot is None:
                    await self._restore_layer(sandbox, template)
                    if restore is not None:
                        await restore(sandbox)
                    await self._start_services(sandbox, template, sandbox_id)
            if not self.records.transition(sandbox_id, SandboxState.RUNNING, "started",
                                           f"running ({sandbox.isolation} isolation), "
                                           f"time to live {request.timeout:g} s"):
                raise SandboxClosedError(f"sandbox {sandbox_id} was killed while it was being created")
            self.live[sandbox_id] = LiveSandbox(sandbox, owner)
            if self.config.sandboxes is not None:
                self.config.sandboxes.placed(self.db, sandbox_id, sandbox)
            info = sandbox_info(self.records.sandbox_row(sandbox_id, None))
            created = CreatedSandbox(**info.model_dump(), access_token=token)
        except BaseException as exc:
            self.stats["start_failures"] += 1
            self.live.pop(sandbox_id, None)
            if sandbox is not None:
                await asyncio.shield(sandbox.close())
            with contextlib.suppress(Exception):  # the record may be what failed (a full disk)
                # its agent died half-way (not a kill, not a failing template): Broken, else Stopped
                broke = isinstance(exc, SandboxCrashedError) and self.records.transition(
                    sandbox_id, SandboxState.BROKEN, "start_failed", f"the sandbox broke while starting: {exc}")
                if not broke:
                    self.records.transition(sandbox_id, SandboxState.STOPPED, "start_failed",
                                            f"the sandbox did not start: {exc}")
            raise
        finally:
            release()
        self.stats["created"] += 1
        return created, sandbox

    def _new_sandbox(self, language: str, **options: Any) -> AsyncSandbox:
        """A sandbox to start: on this machine, or where ``config.sandboxes`` places it."""
        if self.config.sandboxes is not None:
            return self.config.sandboxes.new(language, **options)
        return AsyncSandbox(language, **options)

    def captures_memory(self) -> bool:
        """True when this server's sandboxes can be paused with their memory (microVM)."""
        try:
            return registry.resolve(self.config.isolation).captures_memory
        except CorralError:
            return False

    async def _prepared(self, template: ResolvedTemplate) -> AsyncSandbox:
        """A started sandbox of ``template`` with its layer and services (for the warm sandboxes)."""
        sandbox = self._new_sandbox(template.language, isolation=self.config.isolation, env=sandbox_env(template))
        await sandbox.start()
        try:
            await self._restore_layer(sandbox, template)
            await self._start_services(sandbox, template)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    async def _restore_layer(self, sandbox: AsyncSandbox, template: ResolvedTemplate) -> None:
        """Put a built template's layer (its files) into a started sandbox."""
        if template.manifest_digest is not None:
            manifest = json.loads(await asyncio.to_thread(self.blobs.get, template.manifest_digest))
            await FilesStep().restore(sandbox, self.blobs, manifest["parts"]["files"])

    async def _start_services(self, sandbox: AsyncSandbox, template: ResolvedTemplate,
                              sandbox_id: str | None = None) -> None:
        """Start the template's start_cmd and wait for its ready_cmd to succeed (or for a kill of ``sandbox_id``)."""
        definition = template.definition
        if definition is None:
            return
        if definition.start_cmd is not None:
            await sandbox.commands.start(definition.start_cmd)
        if definition.ready_cmd is not None:
            deadline = time.monotonic() + definition.ready_timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxStartError(f"template {template.name!r}: ready_cmd did not succeed within "
                                            f"{definition.ready_timeout:g} s")
                result = await sandbox.commands.run(definition.ready_cmd, timeout=max(remaining, 0.1))
                if result.ok:
                    return
                if sandbox_id is not None and self.records.sandbox_row(sandbox_id, None)["state"] != "creating":
                    raise SandboxClosedError(f"sandbox {sandbox_id} was killed while it was being created")
                await asyncio.sleep(min(READY_POLL_S, max(deadline - time.monotonic(), 0)))

    def get(self, sandbox_id: str, owner: str | None) -> SandboxInfo:
        """A sandbox's current record."""
        return sandbox_info(self.records.sandbox_row(sandbox_id, owner))

    def list(self, owner: str | None, *, metadata: dict[str, str] | None = None,
             state: SandboxState | None = None) -> list[SandboxInfo]:
        """``owner``'s sandboxes whose metadata has every given key with the given value, newest first."""
        infos = [sandbox_info(row) for row in self.records.sandboxes(owner, state)]
        wanted = (metadata or {}).items()
        return [info for info in infos if all(info.metadata.get(key) == value for key, value in wanted)]

    async def kill(self, sandbox_id: str, owner: str | None) -> SandboxInfo:
        """Stop a sandbox (idempotent). A paused one becomes Stopped; its snapshot stays resumable."""
        row = self.records.sandbox_row(sandbox_id, owner)
        state = SandboxState(row["state"])
        if state is SandboxState.PAUSED:
            self.records.transition(sandbox_id, SandboxState.STOPPED, "killed",
                                    f"killed while paused; snapshot {row['snapshot_id']} is kept")
        elif state is SandboxState.BROKEN:
            self.records.transition(sandbox_id, SandboxState.STOPPED, "killed", "killed while broken")
        elif state is SandboxState.CREATING and row["process_tag"] == self._process_tag:
            # its create sees this state when the start is done, and stops it there
            self.records.transition(sandbox_id, SandboxState.STOPPING, "killed", "killed while it was being created")
        elif sandbox_id in self.live:
            await self._stop(sandbox_id, "killed", "killed by its owner")
            self.stats["killed"] += 1
        return self.get(sandbox_id, owner)

    def set_timeout(self, sandbox_id: str, owner: str | None, seconds: float) -> SandboxInfo:
        """The sandbox now expires ``seconds`` from now."""
        row = self.records.sandbox_row(sandbox_id, owner)
        require_state(row, SandboxState.CREATING, SandboxState.RUNNING)
        self.records.set_expiry(sandbox_id, time.time() + seconds, f"time to live set to {seconds:g} s from now")
        return self.get(sandbox_id, owner)

    # --- data plane ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(self, sandbox_id: str, owner: str | None = None) -> AsyncIterator[AsyncSandbox]:
        """The running sandbox, held in use (a pause waits for it) for the block."""
        self.records.sandbox_row(sandbox_id, owner)  # NotFoundError for another owner's sandbox
        live = self.require_live(sandbox_id)
        if live.pausing:
            raise SandboxClosedError(f"sandbox {sandbox_id} is being paused")
        live.operations += 1
        try:
            yield live.sandbox
        except SandboxCrashedError as exc:
            self.stats["crashed"] += 1
            await self._break(sandbox_id, "crashed", f"the sandbox crashed: {exc}")
            raise
        finally:
            live.operations -= 1
            async with live.idle:
                live.idle.notify_all()
            if live.sandbox.closed and sandbox_id in self.live:
                await self._break(sandbox_id, "crashed", "the sandbox was torn down after a broken run")

    # --- internals -----------------------------------------------------------------

    def reserve(self, owner: str) -> Callable[[], None]:
        """Count a sandbox being started for ``owner`` against its quota; returns what releases it.

        LimitExceededError at the quota. Creates and template builds both hold one.
        """
        self._check_quota(owner)
        self._creating[owner] = self._creating.get(owner, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._creating[owner] -= 1

        return release

    def _check_quota(self, owner: str) -> None:
        if self._count(owner) >= self.config.max_sandboxes_per_owner:
            raise LimitExceededError(f"this key already has {self.config.max_sandboxes_per_owner} live sandboxes "
                                     "(the limit; template builds count too): kill or pause one first")

    def _count(self, owner: str) -> int:
        return self._creating.get(owner, 0) + sum(1 for live in self.live.values() if live.owner == owner)

    async def _stop(self, sandbox_id: str, kind: str, message: str) -> None:
        live = self.live.pop(sandbox_id, None)
        self.records.transition(sandbox_id, SandboxState.STOPPING, kind, message)
        if live is not None:
            await live.sandbox.close()
        self.records.transition(sandbox_id, SandboxState.STOPPED, "stopped", "its processes were killed")

    async def _break(self, sandbox_id: str, kind: str, message: str) -> None:
        """Record a sandbox whose host side failed for good as Broken and tear down what is left of it."""
        live = self.live.pop(sandbox_id, None)
        self.records.transition(sandbox_id, SandboxState.BROKEN, kind, message)  # a kill that came first wins
        if live is not None:
            await live.sandbox.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval_s)
            try:
                await self.reap()
            except Exception:  # the reaper must outlive any one bad row
                log.exception("reaper pass failed")

    async def reap(self) -> int:
        """Kill this process's sandboxes whose time to live passed (broken ones too); returns how many."""
        now, reaped = time.time(), 0
        for sandbox_id, live in list(self.live.items()):
            if live.sandbox.closed:
                await self._break(sandbox_id, "crashed", "the sandbox died")
                continue
            row = self.records.sandbox_row(sandbox_id, None)
            if row["expires_at"] is not None and row["expires_at"] <= now and not live.pausing:
                await self._stop(sandbox_id, "expired", "its time to live passed")
                self.stats["expired"] += 1
                reaped += 1
        for row in self.records.sandboxes(None, SandboxState.BROKEN):
            if (row["process_tag"] == self._process_tag and row["expires_at"] is not None
                    and row["expires_at"] <= now and self.records.transition(
                        row["id"], SandboxState.STOPPED, "expired", "its time to live passed while broken")):
                self.stats["expired"] += 1
                reaped += 1
        return reaped

    def require_live(self, sandbox_id: str) -> LiveSandbox:
        """The live record of a sandbox of this process; SandboxClosedError if it is not running here."""
        live = self.live.get(sandbox_id)
        if live is None:
            require_state(self.records.sandbox_row(sandbox_id, None), SandboxState.RUNNING)
            raise SandboxClosedError(f"sandbox {sandbox_id} runs in another corral process")
        return live
