"""The agent never starts an isolated run it could not confine, and never waits forever on its zygote.

Each test drives the agent's own code on the host: a Landlock refusal the kernel
would give is simulated (monkeypatched), the zygote's socket is real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from corral.agent import lockdown as lockdown_module
from corral.agent.lockdown import Lockdown, LockdownError
from corral.agent.zygote import Zygote, ZygoteGone


def test_an_isolated_run_that_landlock_refused_to_confine_never_reaches_user_code(monkeypatch):
    monkeypatch.setattr(lockdown_module, "drop_capabilities", lambda: None)
    monkeypatch.setattr(lockdown_module, "restrict_writes", lambda paths, scoped: 0)  # restrict_self failed
    monkeypatch.setattr(lockdown_module, "abi_version", lambda: 6)  # ... on a kernel that has Landlock
    with pytest.raises(LockdownError, match="Landlock"):
        Lockdown(["/tmp"], b"\0" * 8).apply(isolated=True)


def _zygote_end(peer_pid: int, deadline_s: float) -> tuple[Zygote, socket.socket]:
    """The agent's end of a zygote whose process is ``peer_pid`` and whose socket nobody serves."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = Zygote.__new__(Zygote)  # not started: the test plays the zygote's silent end
    zygote.pid, zygote.sock, zygote.alive, zygote._pending_exits = peer_pid, ours, True, []
    ours.settimeout(deadline_s)
    return zygote, theirs


def _spawn(zygote: Zygote, program: bytes) -> int:
    pipes = [os.pipe() for _ in range(3)]
    fds = [fd for pair in pipes for fd in pair][:5]
    try:
        return zygote.spawn(fds, "python", "/home/user", {}, {}, program, False)
    finally:
        for pair in pipes:
            for fd in pair:
                os.close(fd)


def test_an_isolated_run_is_never_started_without_the_user_seccomp_filter():
    sleeper = subprocess.Popen(["sleep", "30"])
    zygote, theirs = _zygote_end(sleeper.pid, 5.0)
    try:
        with pytest.raises(ZygoteGone, match="seccomp"):
            _spawn(zygote, b"")
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing was asked of the zygote
            theirs.recv(1 << 16)
    finally:
        zygote.sock.close()
        theirs.close()
        sleeper.kill()
        sleeper.wait()


def test_a_zygote_that_stops_answering_is_given_up_and_killed_not_waited_for():
    sleeper = subprocess.Popen(["sleep", "30"])  # stands in for a SIGSTOPped zygote
    zygote, theirs = _zygote_end(sleeper.pid, 0.3)
    try:
        started = time.monotonic()
        with pytest.raises(ZygoteGone, match="did not answer"):
            _spawn(zygote, b"\0" * 8)
        assert time.monotonic() - started < 5
        assert theirs.recv(1 << 20)  # the request went out; no answer came
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert not zygote.alive
        with pytest.raises(ZygoteGone, match="gone"):
            _spawn(zygote, b"\0" * 8)
    finally:
        zygote.sock.close()
        theirs.close()
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
