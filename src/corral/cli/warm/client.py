"""The warm daemon's client: what ``corral run`` does first (stdlib only).

:func:`run` sends the program to the daemon and prints what it sends back; it
returns only where no daemon took the run (none running: it starts one for
next time; or one that may not serve this client), and the caller then runs
the program in-process. A run the daemon started is never run again here: if
the daemon goes away during it, ``corral run`` fails with corral's exit code.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import time
from typing import Any

from corral.cli.run_args import EXIT_CORRAL_ERROR, Ending, Program, fail, finish, tell
from corral.cli.warm import address

#: How long a client waits for the daemon to take a run (or answer a status or stop request).
ANSWER_TIMEOUT_S = 5.0


def run(program: Program, options: dict[str, Any]) -> None:
    """Have the daemon run ``program`` with ``corral run``'s ``options`` and exit as the run ends (SystemExit);
    return if no daemon took it."""
    if not address.enabled():
        return
    connection = connect()
    if connection is None:
        start()
        return
    with connection:
        request = {"op": "run", "fingerprint": address.fingerprint(), "settings": address.settings(),
                   "program": {"text": program.text, "language": program.language,
                               "stdin": None if program.stdin is None else base64.b64encode(program.stdin).decode()},
                   "options": options}
        frames = _exchange(connection, request)
        first = next(frames, None)
        if first is None or "ready" not in first:
            return  # refused, or no answer in time: the daemon runs nothing, so run it here
        try:
            connection.sendall(address.GO)
        except OSError:
            return  # gone before it started the run
        connection.settimeout(None)  # from here the daemon runs it, bounded by the run's own timeout
        for frame in frames:
            if "out" in frame:
                sys.stdout.write(frame["out"])
                sys.stdout.flush()
            elif "err" in frame:
                sys.stderr.write(frame["err"])
                sys.stderr.flush()
            elif "exit" in frame:
                finish(Ending(frame["exit"], frame["stdout"], frame["notes"]))
            elif "notes" in frame:
                tell(frame["notes"])
            elif "fail" in frame:
                fail(frame["fail"], frame["code"])
        fail(f"the warm daemon went away during the run (see {address.log_path()})", EXIT_CORRAL_ERROR)


def status() -> dict[str, Any] | None:
    """The running daemon's status (pid, runs served and running, idle limit), or None if none answers."""
    answer = _ask({"op": "status"})
    return answer.get("status") if answer is not None else None


def stop() -> bool:
    """Ask the running daemon to exit (its runs are cancelled); whether one answered."""
    answer = _ask({"op": "stop"})
    return answer is not None and answer.get("stopping") is True


def start() -> str | None:
    """Start a daemon in the background (a new session, no terminal); it exits at once if one runs already.

    Returns why none can be started (a directory that cannot be made private), else None.
    """
    problem = address.make_private_dir()
    if problem is not None:
        return problem  # not a directory we may trust: no daemon (a plain corral run runs in-process)
    os.posix_spawn(sys.executable, [sys.executable, "-m", "corral.cli.warm.server"], os.environ, setsid=True,
                   file_actions=[(os.POSIX_SPAWN_OPEN, fd, os.devnull, flags, 0)
                                 for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY))])
    return None


def wait_until_serving(timeout: float) -> dict[str, Any] | None:
    """The daemon's status once it answers (within ``timeout`` seconds), else None."""
    deadline = time.monotonic() + timeout
    while True:
        answer = status()
        if answer is not None or time.monotonic() >= deadline:
            return answer
        time.sleep(0.05)


def connect() -> socket.socket | None:
    """A connection to this user's daemon, or None (none listening, or a directory others could have set up)."""
    if address.private_dir_problem(address.daemon_dir()) is not None:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(ANSWER_TIMEOUT_S)
    try:
        connection.connect(address.socket_path())
    except OSError:
        connection.close()
        return None
    return connection


def _ask(request: dict[str, Any]) -> dict[str, Any] | None:
    connection = connect()
    if connection is None:
        return None
    with connection:
        return next(_exchange(connection, request), None)


def _exchange(connection: socket.socket, request: dict[str, Any]):
    """Send ``request``; yield the daemon's frames until it closes (nothing more if it times out or breaks)."""
    try:
        connection.sendall(json.dumps(request).encode() + b"\n")
        with connection.makefile("rb") as lines:
            for line in lines:
                yield json.loads(line)
    except (OSError, ValueError):
        return
