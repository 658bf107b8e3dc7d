"""Where corral keeps its state (stdlib only, so the CLI's warm-daemon client finds it before any import)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Where corral keeps its state: ``$CORRAL_DATA_DIR``, else a system or per-user default."""
    configured = os.environ.get("CORRAL_DATA_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/corral")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "corral"
