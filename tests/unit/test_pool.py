"""Warm pools without sandboxes: input checks, and hand-out, health checks and recycling on a scripted level."""

from __future__ import annotations

import asyncio
import base64

import pytest

from corral import pool as pool_module
from corral.backends import registry
from corral.errors import InvalidInputError, SandboxClosedError
from corral.lease import wait_for_teardowns
from corral.pool import AsyncPool, run_files
from corral.protocol import wire
from scripted_agent import ScriptedBackend, default_answer


@pytest.mark.parametrize("size", [-1, 1025, True, 1.5, "4"])
def test_pool_size_must_be_an_integer_in_range(size):
    with pytest.raises(InvalidInputError, match="pool size"):
        AsyncPool(size)


def test_pool_takes_sizes_at_the_bounds_and_its_limits_into_the_spec():
    assert AsyncPool(0).size == 0
    pool = AsyncPool(1024, language="javascript", memory_mb=256, timeout=3)
    assert pool.size == 1024
    assert (pool.spec.language, pool.spec.limits.memory_mb, pool.spec.limits.timeout) == ("javascript", 256, 3)
    assert pool.statistics() == {"ready": 0, "starting": 0, "hits": 0, "misses": 0, "recycled": 0}


@pytest.mark.parametrize("limits", [{"memory_mb": -1}, {"timeout": 0}, {"cpus": "many"}])
def test_pool_refuses_bad_limits(limits):
    with pytest.raises(InvalidInputError):
        AsyncPool(1, **limits)


def test_run_files_are_checked_and_encoded():
    assert run_files(None) == () and run_files({}) == ()
    assert run_files({"a.txt": "é", "dir/b.bin": b"\x00\x01", "c": bytearray(b"z")}) == (
        ("a.txt", "é".encode()), ("dir/b.bin", b"\x00\x01"), ("c", b"z"))


@pytest.mark.parametrize(("files", "message"), [
    ({"/etc/passwd": "x"}, "relative"),
    ({"../x": "x"}, "'..'"),
    ({"a//b": "x"}, "empty"),
    ({"./a": "x"}, "'.'"),
    ({"a": 5}, "bytes or str"),
    ({"a": b"x" * (wire.MAX_FILE_BYTES + 1)}, "bytes or str"),
    ({str(i): "" for i in range(wire.MAX_RUN_FILES + 1)}, "at most"),
    ([("a", "x")], "dict"),
])
def test_run_files_refuses(files, message):
    with pytest.raises(InvalidInputError, match=message):
        run_files(files)


async def test_a_closed_pool_hands_out_nothing():
    pool = AsyncPool(1)
    await pool.close()
    with pytest.raises(SandboxClosedError, match="pool is closed"):
        await pool.lease()
    with pytest.raises(SandboxClosedError):
        await pool.run("print(1)")


@pytest.fixture
def scripted(monkeypatch):
    """Register the scripted level for one test (the registry itself has no way to unregister)."""
    registry.names()  # load the built-in levels first, so they are not loaded over ours
    backend = ScriptedBackend()
    monkeypatch.setitem(registry._BACKENDS, backend.name, backend)
    return backend


async def test_bad_run_input_is_refused_before_a_sandbox_is_taken(scripted):
    async with AsyncPool(1, isolation="scripted") as pool:
        with pytest.raises(InvalidInputError):
            await pool.run(b"not text")
        with pytest.raises(InvalidInputError, match="relative"):
            await pool.run("1", files={"/abs": "x"})
        assert not any(r["type"] == "exec" for r in scripted.requests)
        assert pool.statistics()["hits"] == 0


async def test_a_run_takes_a_ready_sandbox_isolated_and_puts_it_back(scripted):
    async with AsyncPool(1, isolation="scripted") as pool:
        assert len(scripted.instances) == 1 and pool.statistics()["ready"] == 1
        assert [r["type"] for r in scripted.requests] == ["ping"]  # a new sandbox is checked before it is ready
        first = await pool.run("one", files={"in.txt": "data"})
        second = await pool.run("two")
        assert (first.stdout, second.stdout) == ("one", "two")
        assert first.warm_pool_hit and first.isolation == "scripted"
        runs = [r for r in scripted.requests if r["type"] == "exec"]
        assert [r["isolated"] for r in runs] == [True, True] and [r["session"] for r in runs] == [False, False]
        assert [(f["path"], base64.b64decode(f["data_b64"])) for f in runs[0]["files"]] == [("in.txt", b"data")]
        assert len(scripted.instances) == 1  # the same sandbox served both
        assert pool.statistics() == {"ready": 1, "starting": 0, "hits": 2, "misses": 0, "recycled": 2}
    assert scripted.instances[0].stopped  # closing the pool tears its sandboxes down


async def test_a_sandbox_that_died_during_a_run_is_replaced_not_recycled(scripted):
    def answer(instance, request):
        if request["type"] == "exec":
            instance.is_alive = False  # the sandbox's process dies as the run ends
        return default_answer(request)

    scripted.answer = answer
    async with AsyncPool(1, isolation="scripted") as pool:
        result = await pool.run("x")
        assert result.stdout == "x"
        assert pool.statistics()["recycled"] == 0
        for _ in range(200):  # the refill starts a new one in the background
            if len(scripted.instances) == 2 and pool.statistics()["ready"] == 1:
                break
            await asyncio.sleep(0.01)
        assert len(scripted.instances) == 2 and pool.statistics()["ready"] == 1
        assert scripted.instances[0].stopped


async def test_an_idle_sandbox_that_fails_its_ping_is_discarded(scripted, monkeypatch):
    pinged = []

    def answer(instance, request):
        if request["type"] == "ping":
            pinged.append(instance)
            if instance is scripted.instances[0] and len(pinged) > 1:  # healthy when new, then not
                return [{"type": "error", "id": request["id"], "code": "internal", "message": "sick"}]
        return default_answer(request)

    scripted.answer = answer
    monkeypatch.setattr(pool_module, "RECHECK_AFTER_S", 0.0)  # every hand-out pings
    async with AsyncPool(1, isolation="scripted") as pool:
        lease = await pool.lease()
        assert pinged[:2] == [scripted.instances[0], scripted.instances[0]]
        assert lease.instance is scripted.instances[1] and not lease.warm  # a cold start replaced it
        assert (pool.statistics()["hits"], pool.statistics()["misses"]) == (0, 1)
        await wait_for_teardowns()
        assert scripted.instances[0].stopped and not lease.instance.stopped
        lease.instance.stop_now()


async def test_a_run_the_sandbox_refuses_to_isolate_is_retried_on_another(scripted):
    runs_on = []

    def answer(instance, request):
        if request["type"] == "exec":
            runs_on.append(instance)
            if instance is scripted.instances[0]:
                return [{"type": "error", "id": request["id"], "code": "broken", "message": "cannot isolate"}]
        return default_answer(request)

    scripted.answer = answer
    async with AsyncPool(1, isolation="scripted") as pool:
        result = await pool.run("again")
        assert result.stdout == "again"
        assert runs_on == scripted.instances[:2]  # refused on the first, run on a second
        await wait_for_teardowns()
        assert scripted.instances[0].stopped
