"""Sandboxes started and prepared ahead of time, per template, so a create is a hand-out.

For each template a create asked for (with no env or limits of its own), up
to ``size`` sandboxes are kept started, with the template's layer restored,
its start_cmd started and its ready_cmd passed. A create takes one after a
health check (the agent must answer a ping) and a refill starts in the
background; with none ready, the create starts one cold as before. Templates
are keyed by content (language, layer, definition), so two names of the same
build share sandboxes. At most ``max_templates`` templates are kept warm: the
one used least recently gives its sandboxes up first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

from corral.errors import CorralError
from corral.hosted.templates import ResolvedTemplate
from corral.protocol import Ack, PingRequest
from corral.sandbox import AsyncSandbox

log = logging.getLogger("corral.server")

#: How long a health check of a ready sandbox may take.
PING_TIMEOUT_S = 2.0
#: Templates kept warm at once (each holds up to ``size`` sandboxes).
MAX_TEMPLATES = 8


def template_key(template: ResolvedTemplate) -> str:
    """What makes two templates' sandboxes interchangeable."""
    definition = template.definition.model_dump_json(exclude={"name"}) if template.definition else ""
    return hashlib.sha256(f"{template.language}\0{template.manifest_digest}\0{definition}".encode()).hexdigest()


class WarmSandboxes:
    """Ready sandboxes per template, refilled in the background."""

    def __init__(self, size: int, prepare: Callable[[ResolvedTemplate], Awaitable[AsyncSandbox]],
                 max_templates: int = MAX_TEMPLATES):
        self.size = size
        self.max_templates = max_templates
        self._prepare = prepare
        self._ready: dict[str, list[AsyncSandbox]] = {}
        self._refills: dict[str, asyncio.Task] = {}
        self._closed = False
        self.hits = 0
        self.misses = 0

    async def take(self, template: ResolvedTemplate) -> AsyncSandbox | None:
        """A ready, healthy sandbox of ``template`` (None if there is none); a refill starts."""
        key = template_key(template)
        ready = self._ready.pop(key, [])
        self._ready[key] = ready  # now the most recently used
        while len(self._ready) > self.max_templates:
            await self._evict(next(iter(self._ready)))
        sandbox = None
        while ready and sandbox is None:
            candidate = ready.pop(0)
            if await _healthy(candidate):
                sandbox = candidate
            else:
                log.warning("discarding a warm sandbox that failed its health check")
                await candidate.close()
        if sandbox is None:
            self.misses += 1
        else:
            self.hits += 1
        self._refill_soon(key, template)
        return sandbox

    def _refill_soon(self, key: str, template: ResolvedTemplate) -> None:
        running = self._refills.get(key)
        if not self._closed and (running is None or running.done()):
            self._refills[key] = asyncio.ensure_future(self._refill(key, template))

    async def _refill(self, key: str, template: ResolvedTemplate) -> None:
        ready = self._ready.get(key)
        if ready is None:
            return
        failures = 0
        while not self._closed and len(ready) < self.size and failures < 3:
            try:
                sandbox = await self._prepare(template)
            except CorralError as exc:
                failures += 1
                log.warning("could not prepare a warm sandbox of %s: %s", template.name, exc)
                continue
            if self._closed or self._ready.get(key) is not ready:  # closed, or evicted meanwhile
                await sandbox.close()
                return
            ready.append(sandbox)

    async def _evict(self, key: str) -> None:
        refill = self._refills.pop(key, None)
        if refill is not None:
            refill.cancel()
            with contextlib.suppress(BaseException):
                await refill
        for sandbox in self._ready.pop(key, []):
            await sandbox.close()

    def ready_count(self) -> int:
        """Sandboxes ready now, over all templates."""
        return sum(len(ready) for ready in self._ready.values())

    async def close(self) -> None:
        """Stop refilling and close every ready sandbox."""
        self._closed = True
        for task in self._refills.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for ready in self._ready.values():
            while ready:
                await ready.pop().close()


async def _healthy(sandbox: AsyncSandbox) -> bool:
    if sandbox.closed:
        return False
    try:
        event = await asyncio.wait_for(sandbox.channel.call(lambda request_id: PingRequest(id=request_id)),
                                       PING_TIMEOUT_S)
    except (asyncio.TimeoutError, CorralError):
        return False
    return isinstance(event, Ack)
