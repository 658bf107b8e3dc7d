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
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from corral.agent import lockdown as lockdown_module
from corral.agent import zygote as zygote_module
from corral.agent.lockdown import Lockdown, LockdownError
from corral.agent.zygote import Zygote, ZygoteGone


def test_an_isolated_run_that_landlock_refused_to_confine_never_reaches_user_code(monkeypatch):
    monkeypatch.setattr(lockdown_module, "drop_capabilities", lambda: None)
    monkeypatch.setattr(lockdown_module, "restrict_writes", lambda paths, scoped: 0)  # restrict_self failed
    monkeypatch.setattr(lockdown_module, "abi_version", lambda: 6)  # ... on a kernel that has Landlock
    with pytest.raises(LockdownError, match="Landlock"):
        Lockdown(["/tmp"], b"\0" * 8).apply(isolated=True)


@dataclass
class SilentZygote:
    """The agent's end of a zygote nobody serves; ``process`` stands in for the zygote (SIGSTOPped)."""

    zygote: Zygote
    theirs: socket.socket
    process: subprocess.Popen


@pytest.fixture
def silent() -> Iterator[SilentZygote]:
    process = subprocess.Popen(["sleep", "30"])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = Zygote.__new__(Zygote)  # not started: the test plays the zygote's silent end
    zygote.pid, zygote.sock, zygote.alive, zygote._pending_exits = process.pid, ours, True, []
    ours.setblocking(True)
    try:
        yield SilentZygote(zygote, theirs, process)
    finally:
        ours.close()
        theirs.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def _spawn(zygote: Zygote, program: bytes) -> int:
    pipes = [os.pipe() for _ in range(3)]
    fds = [fd for pair in pipes for fd in pair][:5]
    try:
        return zygote.spawn(fds, "python", "/home/user", {}, {}, program, False)
    finally:
        for pair in pipes:
            for fd in pair:
                os.close(fd)


def test_an_isolated_run_is_never_started_without_the_user_seccomp_filter(silent: SilentZygote):
    with pytest.raises(ZygoteGone, match="seccomp"):
        _spawn(silent.zygote, b"")
    silent.theirs.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing was asked of the zygote
        silent.theirs.recv(1 << 16)


def test_a_zygote_that_stops_answering_is_given_up_and_killed_not_waited_for(monkeypatch, silent: SilentZygote):
    monkeypatch.setattr(zygote_module, "REPLY_DEADLINE_S", 0.3)
    started = time.monotonic()
    with pytest.raises(ZygoteGone, match="did not answer"):
        _spawn(silent.zygote, b"\0" * 8)
    assert time.monotonic() - started < 5
    assert silent.theirs.recv(1 << 20)  # the request went out; no answer came
    assert silent.process.wait(timeout=5) == -signal.SIGKILL
    assert not silent.zygote.alive
    with pytest.raises(ZygoteGone, match="gone"):
        _spawn(silent.zygote, b"\0" * 8)


def test_a_kill_the_stopped_zygote_cannot_take_gives_it_up_instead_of_blocking(silent: SilentZygote):
    silent.zygote.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        while True:  # the zygote reads nothing: fill its socket
            silent.zygote.sock.send(b"x" * 4096)
    silent.zygote.sock.setblocking(True)
    silent.zygote.kill(1234)
    assert not silent.zygote.alive
    assert silent.process.wait(timeout=5) == -signal.SIGKILL


def test_a_wakeup_with_nothing_to_read_leaves_the_zygote_alive_at_once(silent: SilentZygote):
    started = time.monotonic()
    silent.zygote.on_readable()  # epoll woke the agent, but the reply was taken by a spawn meanwhile
    assert silent.zygote.alive and time.monotonic() - started < 1
