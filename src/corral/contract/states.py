"""A hosted sandbox's lifecycle: the states and the transitions allowed between them.

::

    Creating ──► Running ──► Paused ──► Stopped   (resumed: a new sandbox continues it; or killed)
        │           │
        └──────► Stopping ──► Stopped

Every transition is checked here and recorded (with a LogEvent) by the service.
"""

from __future__ import annotations

import enum


class SandboxState(str, enum.Enum):
    """Where a hosted sandbox is in its life."""

    CREATING = "creating"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"


TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    SandboxState.CREATING: frozenset({SandboxState.RUNNING, SandboxState.STOPPING, SandboxState.STOPPED}),
    SandboxState.RUNNING: frozenset({SandboxState.PAUSED, SandboxState.STOPPING, SandboxState.STOPPED}),
    SandboxState.PAUSED: frozenset({SandboxState.STOPPED}),
    SandboxState.STOPPING: frozenset({SandboxState.STOPPED}),
    SandboxState.STOPPED: frozenset(),
}

#: States in which the sandbox holds processes on the host.
LIVE_STATES = frozenset({SandboxState.CREATING, SandboxState.RUNNING, SandboxState.STOPPING})


def allowed(old: SandboxState, new: SandboxState) -> bool:
    """True when ``old -> new`` is a transition of the table."""
    return new in TRANSITIONS[old]
