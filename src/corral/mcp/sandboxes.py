"""The sandboxes one MCP server created, by id: the handles a model passes back to the tools.

Sandboxes are corral's hosted sandboxes (``corral.Sandbox.create``): in this
process without ``server``, on a corral server with it. This module only keeps
the ids it was given, refuses ids it did not create, holds the cap on how many
may be alive at once, and kills them all when the MCP server stops. Every
lifecycle rule (time to live, states, quotas) is the hosted service's own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from corral import Sandbox
from corral.client import HostedSandbox, SandboxState
from corral.errors import CorralError, LimitExceededError, NotFoundError

log = logging.getLogger("corral.mcp")

#: Metadata put on every sandbox an MCP server creates (to find them with ``Sandbox.list``).
METADATA = {"created_by": "corral-mcp"}


@dataclass(frozen=True)
class McpConfig:
    """Where sandboxes live and the MCP server's own limits."""

    #: A corral server's URL, or None for sandboxes in this process.
    server: str | None = None
    #: The API key for ``server`` (None: ``$CORRAL_API_KEY``).
    api_key: str | None = None
    #: Sandboxes alive at once, per MCP server.
    max_sandboxes: int = 4
    #: Time to live of each sandbox, in seconds (the hosted service kills it then).
    sandbox_ttl_s: float = 3600.0
    #: Characters of text in one tool result; longer output is cut in the middle, with a note.
    max_output_chars: int = 20_000


class Sandboxes:
    """The sandboxes created through one MCP server, by id (thread-safe: tools run on worker threads)."""

    def __init__(self, config: McpConfig):
        self.config = config
        self._lock = threading.Lock()
        self._sandboxes: dict[str, HostedSandbox] = {}
        self._starting = 0

    def _where(self) -> dict[str, str]:
        if self.config.server is None:
            return {}
        where = {"server": self.config.server}
        if self.config.api_key is not None:
            where["api_key"] = self.config.api_key
        return where

    def create(self, template: str, *, env: dict[str, str] | None = None, memory_mb: int | None = None,
               run_timeout: float | None = None) -> HostedSandbox:
        """Start a sandbox from ``template``; LimitExceededError when the cap is reached."""
        with self._lock:
            if len(self._sandboxes) + self._starting >= self.config.max_sandboxes:
                self._forget_stopped()
            if len(self._sandboxes) + self._starting >= self.config.max_sandboxes:
                raise LimitExceededError(
                    f"this MCP server already has {self.config.max_sandboxes} sandboxes (its limit): "
                    f"kill one with kill_sandbox first ({', '.join(self._sandboxes) or 'starting'})")
            self._starting += 1
        limits = {name: value for name, value in (("memory_mb", memory_mb), ("run_timeout", run_timeout))
                  if value is not None}
        try:
            sandbox = Sandbox.create(template, ttl=self.config.sandbox_ttl_s, metadata=METADATA, env=env,
                                     **limits, **self._where())
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            self._sandboxes[sandbox.id] = sandbox
        return sandbox

    def get(self, sandbox_id: str) -> HostedSandbox:
        """The sandbox ``sandbox_id``; NotFoundError for an id this MCP server did not create (or killed)."""
        with self._lock:
            sandbox = self._sandboxes.get(sandbox_id)
            known = ", ".join(self._sandboxes)
        if sandbox is None:
            held = f"the sandboxes {known}" if known else "no sandbox"
            raise NotFoundError(f"unknown sandbox id {sandbox_id!r}: this MCP server has {held}; "
                                "create one with create_sandbox")
        return sandbox

    def ids(self) -> list[str]:
        """Ids of the sandboxes this MCP server holds, oldest first."""
        with self._lock:
            return list(self._sandboxes)

    def kill(self, sandbox_id: str) -> None:
        """Kill one sandbox and forget it."""
        sandbox = self.get(sandbox_id)
        with self._lock:
            self._sandboxes.pop(sandbox_id, None)
        sandbox.kill()

    def kill_all(self) -> int:
        """Kill every sandbox this MCP server holds (when it stops); returns how many were asked to stop."""
        with self._lock:
            sandboxes = list(self._sandboxes.values())
            self._sandboxes.clear()
        for sandbox in sandboxes:
            try:
                sandbox.kill()
            except CorralError as exc:  # one unreachable sandbox must not keep the others alive
                log.warning("could not kill sandbox %s: %s", sandbox.id, exc)
        return len(sandboxes)

    def _forget_stopped(self) -> None:
        """Drop the sandboxes that stopped without us (their time to live passed, killed elsewhere)."""
        for sandbox_id, sandbox in list(self._sandboxes.items()):
            try:
                state = sandbox.refresh().state
            except NotFoundError:
                state = SandboxState.STOPPED
            if state not in (SandboxState.CREATING, SandboxState.RUNNING):
                del self._sandboxes[sandbox_id]
