"""Pause and resume through the server where the isolation level captures memory (microVM)."""

from __future__ import annotations

import pytest

from corral import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.levels("microvm"), pytest.mark.slow]


def test_a_paused_microvm_comes_back_with_its_interpreter_state(fresh_server):
    where = {"server": fresh_server.url, "api_key": fresh_server.key}
    sandbox = Sandbox.create(**where, timeout=600)
    sandbox.run("counter = 41")
    sandbox.files.write("notes.txt", b"kept")
    snapshot = sandbox.pause()
    assert snapshot.memory
    fresh_server.restart()  # the memory outlives the server
    for _ in range(2):  # one snapshot, two independent continuations
        resumed = Sandbox.resume(snapshot.id, **where, timeout=600)
        assert resumed.run("counter += 1; print(counter)").stdout == "42\n"
        assert resumed.files.read("notes.txt") == b"kept"
        resumed.kill()
