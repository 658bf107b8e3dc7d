"""The contract every isolation backend implements.

A backend knows one thing: how to start an isolated world with the corral
agent inside and hand back a byte stream to it. Everything users do (run,
stream, files, sessions) is agent protocol on top of that stream, so it works
the same on every backend. Nothing outside ``corral.backends`` knows about
bwrap or QEMU.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import InvalidInputError, SandboxStartError
from corral.models import ResourceUsage, SandboxSpec
from corral.protocol import Hello, parse_event, wire


@dataclass(frozen=True)
class ProbeResult:
    """Whether a backend works on this host, and why (not)."""

    available: bool
    reason: str
    #: Feature name -> one line on its state, for ``corral doctor``.
    details: dict[str, str] = field(default_factory=dict)
    #: True when the isolation is hardware-enforced (counts for ``isolation="auto"``).
    hardware_isolated: bool = False


class Instance(abc.ABC):
    """A started sandbox whose agent has said hello.

    ``reader``/``writer`` carry the wire protocol. ``setup_ms`` is host-side
    preparation, ``boot_ms`` the time from launch to the agent's hello.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    setup_ms: float
    boot_ms: float
    #: A host directory, private to this sandbox, whose Unix sockets the agent can
    #: connect to at ``wire.SERVICE_DIR`` (the egress proxy, port forwarding).
    service_dir: Path

    @abc.abstractmethod
    def alive(self) -> bool:
        """True while the sandbox's top process runs (cheap; no round trip to the agent)."""

    @abc.abstractmethod
    def usage(self) -> ResourceUsage | None:
        """Resource use so far, or None where the host cannot measure it."""

    @abc.abstractmethod
    def reset_accounting(self) -> None:
        """Start peak-memory accounting afresh (the sandbox is being reused)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Kill everything in the sandbox and release its resources.

        Idempotent; never waits on a fixed grace period; must not raise.
        """

    @abc.abstractmethod
    def stop_now(self) -> None:
        """Synchronous last resort when no event loop will run :meth:`stop` (it is closing).

        Kills everything and releases the resources without awaiting; idempotent; must not raise.
        """

    @abc.abstractmethod
    def diagnostics(self) -> str:
        """What the sandbox printed outside the protocol (for error messages)."""

    def console_log(self) -> str:
        """Everything the sandbox printed outside the protocol so far (default: the diagnostics)."""
        return self.diagnostics()

    @contextlib.asynccontextmanager
    async def stopped_on_failure(self) -> AsyncIterator[None]:
        """Stop the sandbox if the block raises: at once if the caller went away, else awaited."""
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                self.stop_now()  # no awaiting any more
            else:
                await self.stop()
            raise


#: What a level can do beyond what every level does the same way (run, sessions, files,
#: commands, env, errors: see tests/conformance/). A backend lists those it has in
#: :attr:`Backend.capabilities`.
CAPABILITIES = {
    "confinement": "untrusted code is confined: it cannot read or change the host (namespaces, seccomp, a VM)",
    "resource_limits": "memory and process-count limits are enforced on the sandbox",
    "network_namespace": "the sandbox has a network stack of its own: no network unless egress is allowed",
    "per_run_isolation": "a one-shot run can get fresh namespaces of its own (pools, corral.run)",
    "pty": "terminals: a shell on a pseudo-terminal",
    "memory_snapshot": "pause() saves the running sandbox's memory, and resume continues it",
}


class Backend(abc.ABC):
    """An isolation level. Implementations register themselves by name."""

    #: Name users pass as ``isolation=``.
    name: str
    #: The :data:`CAPABILITIES` this level has.
    capabilities: frozenset[str] = frozenset()

    @property
    def captures_memory(self) -> bool:
        """True where :meth:`pause` can save a running sandbox's memory (the ``memory_snapshot`` capability)."""
        return "memory_snapshot" in self.capabilities

    @abc.abstractmethod
    def probe(self) -> ProbeResult:
        """Check (and cache) whether this backend works here. Never raises."""

    def may_be_hardware_isolated(self) -> bool:
        """Cheap, without probing: could :meth:`probe` report ``hardware_isolated`` here?

        ``isolation="auto"`` does not probe a level that answers False (its probe may be slow),
        so an implementation must never answer False where its probe would report hardware
        isolation. Default: True (always probe). Never raises.
        """
        return True

    async def pause(self, instance: Instance, directory: Path) -> None:
        """Save a running sandbox whole, memory included, into ``directory``, then stop it.

        Only for levels that can capture memory; the others raise InvalidInputError.
        """
        raise InvalidInputError(f"isolation={self.name!r} cannot capture a sandbox's memory")

    async def resume(self, directory: Path, spec: SandboxSpec) -> Instance:
        """Start a sandbox from what :meth:`pause` saved in ``directory``; it continues where it stopped."""
        raise InvalidInputError(f"isolation={self.name!r} cannot resume a memory snapshot")

    @abc.abstractmethod
    async def start(self, spec: SandboxSpec) -> Instance:
        """Start a sandbox for ``spec`` and wait for its agent's hello.

        Precondition: ``probe().available``. Raises SandboxStartError (transient:
        nothing ran) if the sandbox does not come up.
        """


def parse_hello(line: bytes) -> Hello:
    """The agent's first line as a Hello of this protocol version, or SandboxStartError."""
    try:
        event = parse_event(line)
    except ValueError as exc:
        raise SandboxStartError(f"the agent's first message is not a hello: {exc}") from None
    if not isinstance(event, Hello) or event.version != wire.PROTOCOL_VERSION:
        raise SandboxStartError(f"unexpected greeting from the agent: {line[:200]!r}")
    return event


async def off_loop(function) -> None:
    """Run blocking clean-up in a thread; inline once the interpreter is shutting down."""
    try:
        await asyncio.to_thread(function)
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
        function()
