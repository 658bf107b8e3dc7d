"""The server's state directory, with everything secret in a part only the server's user can enter.

::

    <state dir>/          any mode: it may be corral's data directory, which sandboxes traverse
        private/          0700: the database (API key hashes, sandboxes' env, templates), blobs
            corral.db     0600 (and its -wal and -shm files)     (file contents of snapshots and
            blobs/                                                templates), memory snapshots
            memory/

Sandboxes run as an unprivileged host uid (65534) that must be able to traverse the
runtime directory, so the data directory itself cannot be private; ``private/``
is. :func:`open_state_dir` moves an older layout (the same entries directly under
the state directory, readable by every user) into it, so nothing is lost.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from corral.hosted.database import DB_FILE

log = logging.getLogger("corral.server")

#: The private part of a state directory.
PRIVATE = "private"
#: What an older layout kept directly in the state directory (the database's journal files first).
_MOVED = (f"{DB_FILE}-wal", f"{DB_FILE}-shm", DB_FILE, "blobs", "memory")


@dataclass(frozen=True)
class StateDir:
    """Where one server (or local mode) keeps its state."""

    root: Path

    @property
    def private(self) -> Path:
        """The 0700 directory that holds everything below."""
        return self.root / PRIVATE

    @property
    def database(self) -> Path:
        """The SQLite database."""
        return self.private / DB_FILE

    @property
    def blobs(self) -> Path:
        """The content-addressed blob store."""
        return self.private / "blobs"

    @property
    def memory(self) -> Path:
        """Memory snapshots (microVM continuations), one directory per snapshot."""
        return self.private / "memory"


def open_state_dir(root: Path) -> StateDir:
    """Create ``root`` and its private part (mode 0700), moving an older layout into it first."""
    state = StateDir(root)
    root.mkdir(parents=True, exist_ok=True)
    state.private.mkdir(mode=0o700, exist_ok=True)
    os.chmod(state.private, 0o700)  # one made by hand, or by an older corral, may be wider
    for name in _MOVED:
        old, new = root / name, state.private / name
        if not os.path.lexists(old):
            continue
        if os.path.lexists(new):
            log.warning("%s is left where it is: %s exists already", old, new)
            continue
        os.rename(old, new)
        log.info("moved %s into %s (readable by the server's user only)", old, state.private)
    return state
