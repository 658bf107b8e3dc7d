"""One meaning per name: ``ttl`` is a hosted sandbox's time to live, ``timeout`` one run's limit, ``kill``
stops a sandbox, ``disconnect`` lets a hosted one run on; the old spellings still work, with a warning."""

from __future__ import annotations

import asyncio

import pytest

import corral
from corral import Sandbox
from corral.errors import InvalidInputError

pytestmark = pytest.mark.sandbox


def _lifetime(info) -> float:
    return info.expires_at - info.updated_at


def test_ttl_is_the_time_to_live_and_run_timeout_a_runs_limit(where):
    sandbox = Sandbox.create(**where, ttl=900, run_timeout=1)
    try:
        assert 890 < _lifetime(sandbox.info) <= 900
        assert sandbox.run("while True: pass").timed_out
        assert 1700 < _lifetime(sandbox.set_ttl(1800)) <= 1800
    finally:
        sandbox.kill()


def test_the_old_spellings_warn_and_keep_their_meaning(where):
    with pytest.warns(DeprecationWarning, match=r"create\(timeout=...\) is deprecated: the time to live is ttl="):
        sandbox = Sandbox.create(**where, timeout=900)
    try:
        assert 890 < _lifetime(sandbox.info) <= 900
        with pytest.warns(DeprecationWarning, match=r"set_timeout\(\) is deprecated: call set_ttl\(\)"):
            assert 1700 < _lifetime(sandbox.set_timeout(1800)) <= 1800
        other = Sandbox.connect(sandbox.id, **where)
        with pytest.warns(DeprecationWarning, match=r"close\(\) of a hosted sandbox is deprecated"):
            other.close()
        assert sandbox.refresh().state == "running"  # close() still only disconnected
    finally:
        sandbox.kill()
    with pytest.raises(InvalidInputError, match="ttl= and its deprecated name timeout="):
        Sandbox.create(**where, ttl=10, timeout=10)


def test_disconnect_lets_it_run_and_kill_stops_it(where):
    sandbox = Sandbox.create(**where, ttl=300)
    other = Sandbox.connect(sandbox.id, **where)
    other.disconnect()
    assert sandbox.run("print(1)").stdout == "1\n"
    sandbox.kill()
    assert Sandbox.connect(sandbox.id, **where).info.state == "stopped"


def test_the_async_twins_use_the_same_names(where):
    async def main() -> None:
        with pytest.warns(DeprecationWarning, match=r"resume\(timeout=...\)|create\(timeout=...\)"):
            sandbox = await corral.AsyncSandbox.create(**where, timeout=600)
        try:
            assert 590 < _lifetime(sandbox.info) <= 600
            assert 1190 < _lifetime(await sandbox.set_ttl(1200)) <= 1200
            await sandbox.disconnect()
        finally:
            await sandbox.kill()

    asyncio.run(main())


def test_a_local_sandbox_has_kill_too():
    with corral.Sandbox() as sandbox:
        sandbox.kill()
        assert sandbox.closed
        sandbox.close()  # idempotent, as before
