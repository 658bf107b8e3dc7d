"""A hosted sandbox's lifecycle: the states and the transitions allowed between them.

::

    Creating ──► Running ──► Paused ──► Stopped   (resumed: a new sandbox continues it; or killed)
        │           │
        ├──────► Stopping ──► Stopped
        │           │
        └──────► Broken ────► Stopped             (killed, expired, or its process exited)

Broken: the sandbox's host side failed for good (its agent died, a run crashed it, its
start broke half-way); what was left of it is torn down, its record stays visible, and a
kill (or its time to live) is all it still takes. Every state change goes through
:func:`allowed` (``corral.hosted.records.Records.transition`` is the only writer) and is
recorded with a LogEvent by the service.
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
    BROKEN = "broken"


TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    SandboxState.CREATING: frozenset({SandboxState.RUNNING, SandboxState.STOPPING, SandboxState.STOPPED,
                                      SandboxState.BROKEN}),
    SandboxState.RUNNING: frozenset({SandboxState.PAUSED, SandboxState.STOPPING, SandboxState.STOPPED,
                                     SandboxState.BROKEN}),
    SandboxState.PAUSED: frozenset({SandboxState.STOPPED}),
    SandboxState.STOPPING: frozenset({SandboxState.STOPPED}),
    SandboxState.BROKEN: frozenset({SandboxState.STOPPED}),
    SandboxState.STOPPED: frozenset(),
}

#: States in which the sandbox holds processes on the host.
LIVE_STATES = frozenset({SandboxState.CREATING, SandboxState.RUNNING, SandboxState.STOPPING})
#: States a sandbox of a corral process that exited is found in and marked Stopped from.
UNFINISHED_STATES = LIVE_STATES | {SandboxState.BROKEN}


def allowed(old: SandboxState, new: SandboxState) -> bool:
    """True when ``old -> new`` is a transition of the table."""
    return new in TRANSITIONS[old]
