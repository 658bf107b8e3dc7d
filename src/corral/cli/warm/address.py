"""Where the warm daemon listens, and which clients it may serve (stdlib only: the client reads it first)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping

from corral.host.data_dir import data_dir
from corral.version import __version__

#: ``off`` (or 0, no, false): never use or start a daemon; anything else (default ``auto``): use it.
MODE_ENV = "CORRAL_DAEMON"
#: Seconds the daemon lives on without a run.
IDLE_ENV = "CORRAL_DAEMON_IDLE"
DEFAULT_IDLE_S = 600.0
#: The directory of the daemon's socket, lock and log (default: ``<data dir>/daemon/<uid>``).
DIR_ENV = "CORRAL_DAEMON_DIR"
_OFF = frozenset({"off", "0", "no", "false"})
#: What a client answers the daemon's ``{"ready": true}`` with to have its run started (anything else: no run).
GO = b"go\n"


#: The longest path a Unix socket address holds (sun_path, with its terminating NUL).
_SUN_PATH_BYTES = 108


def enabled() -> bool:
    """Whether ``corral run`` may use (and start) the warm daemon: not turned off, and a socket path that fits."""
    if os.environ.get(MODE_ENV, "auto").strip().lower() in _OFF:
        return False
    return len(os.fsencode(socket_path())) < _SUN_PATH_BYTES


def idle_seconds() -> float:
    """How long the daemon waits for a run before it exits (``CORRAL_DAEMON_IDLE``; a bad value: the default)."""
    try:
        value = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
    except ValueError:
        return DEFAULT_IDLE_S
    return value if value > 0 else DEFAULT_IDLE_S


def daemon_dir() -> str:
    """The directory of this user's daemon."""
    return os.environ.get(DIR_ENV) or os.path.join(data_dir(), "daemon", str(os.geteuid()))


def socket_path() -> str:
    """The daemon's Unix socket."""
    return os.path.join(daemon_dir(), "daemon.sock")


def lock_path() -> str:
    """The file the running daemon holds locked (one daemon per directory)."""
    return os.path.join(daemon_dir(), "daemon.lock")


def log_path() -> str:
    """Where the daemon writes what goes wrong."""
    return os.path.join(daemon_dir(), "daemon.log")


def private_dir_problem(path: str) -> str | None:
    """Why ``path`` is not a directory only this user can use (None: it is)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.geteuid():
        return f"{path} belongs to uid {info.st_uid}, not to this user"
    if info.st_mode & 0o077:
        return f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}, wants 700)"
    return None


def make_private_dir() -> str | None:
    """Create the daemon's directory (mode 0700) if needed; why it cannot be used, or None."""
    path = daemon_dir()
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror}"
    return private_dir_problem(path)


def fingerprint() -> str:
    """This corral: its version, interpreter, place and the newest change to its source files.

    A daemon serves only clients with its own fingerprint, so an upgrade or an
    edited source tree is never served by a daemon still running the old code.
    """
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    newest = 0
    for root, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
    return f"{__version__}|{sys.executable}|{package}|{newest}"


def settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The part of ``environ`` a daemon must share with a client to serve it: ``CORRAL_*`` (but the daemon's own)
    and PATH."""
    chosen = {name: value for name, value in environ.items()
              if name.startswith("CORRAL_") and not name.startswith("CORRAL_DAEMON")}
    chosen["PATH"] = environ.get("PATH", "")
    return chosen
