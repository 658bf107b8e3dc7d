"""corral.cluster on a real local Ray cluster: placement on every node, batches, sessions, joins and node deaths."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import RayCluster, node_id_of

import corral

cc = pytest.importorskip("corral.cluster", reason="ray is not installed (pip install 'corral[ray]')")
from corral.errors import NodeLostError, SandboxCrashedError

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.levels("process"), pytest.mark.timeout(180)]

PER_NODE = 2


@pytest.fixture(scope="module")
def pool(ray_cluster: RayCluster) -> Iterator[cc.Pool]:
    with cc.Pool(address=ray_cluster.address, isolation="process", per_node=PER_NODE, min_nodes=2,
                 memory_mb=128) as pool:
        yield pool


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_runs_land_on_every_node_with_corral_results(pool: cc.Pool) -> None:
    async def many() -> list[cc.ClusterExecutionResult]:
        return await asyncio.gather(*(pool._async.run(f"import time; time.sleep(0.2); print({n} * 2)")
                                      for n in range(8)))

    from corral.sync_bridge import bridge

    results = bridge.call(many())
    assert [r.stdout for r in results] == [f"{n * 2}\n" for n in range(8)]
    assert all(isinstance(r, corral.ExecutionResult) and r.ok and r.isolation == "process" for r in results)
    ready = {node["node_id"] for node in pool.nodes()}
    assert {r.node_id for r in results} == ready and len(ready) == 2
    single = pool.run("import sys; print(sys.stdin.read())", stdin="hi")
    assert single.stdout == "hi\n" and single.node_id in ready


def test_batch_spreads_over_nodes_with_bounded_in_flight(pool: cc.Pool) -> None:
    items = [{"code": "import time; time.sleep(0.1); print(int(input()) + 1)",
              "tests": [{"stdin": f"{n}\n", "expected": f"{n + 1}\n"}]} for n in range(12)]
    items.append({"code": "print(1)", "language": "cobol"})  # invalid: its own result, runs nowhere
    seen_in_flight = []
    results = []
    for result in pool.run_many(items, concurrency=16):
        seen_in_flight.append([node["in_flight"] for node in pool.nodes()])
        results.append(result)
    assert sorted(r.index for r in results) == list(range(13))
    by_index = {r.index: r for r in results}
    assert by_index[12].verdict == "invalid_input" and by_index[12].node_id is None
    assert all(by_index[n].verdict == "accepted" for n in range(12))
    assert len({by_index[n].node_id for n in range(12)}) == 2
    assert all(count <= PER_NODE for sample in seen_in_flight for count in sample)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def test_closing_a_batch_early_stops_its_runs_on_the_nodes(pool: cc.Pool) -> None:
    marker = "61.4321"  # sleep's argument: findable among the host's processes (the nodes are on this machine)
    items = [{"code": "print('quick')"}] + [{"code": f"sleep {marker}", "language": "shell"}] * 3
    results = pool.run_many(items, concurrency=4)
    assert next(results).index == 0
    _wait_for(lambda: len(_processes_with(f"sleep {marker}")) >= 3)
    results.close()
    _wait_for(lambda: not _processes_with(f"sleep {marker}"), timeout=15)
    assert all(node["in_flight"] == 0 for node in pool.nodes())


def test_session_keeps_state_on_its_node(pool: cc.Pool) -> None:
    with pool.sandbox() as sandbox:
        first = sandbox.run("x = 41")
        second = sandbox.run("print(x + 1)")
        assert second.stdout == "42\n" and first.node_id == second.node_id == sandbox.node_id
        assert sandbox.files.write("data/a.txt", "hello") == 5
        assert sandbox.files.read_text("data/a.txt") == "hello"
        assert [entry.name for entry in sandbox.files.list("data")] == ["a.txt"]
        assert sandbox.commands.run("cat data/a.txt").stdout == "hello"
        # a streamed block's output comes from its node as it is printed, not at the end
        arrivals = []
        for item in sandbox.stream("import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.4)"):
            arrivals.append((time.monotonic(), item))
        events, result = [item for _, item in arrivals[:-1]], arrivals[-1][1]
        assert "".join(event.data for event in events) == "0\n1\n2\n" and result.node_id == sandbox.node_id
        assert arrivals[-1][0] - arrivals[0][0] > 0.6
    assert pool.statistics()["nodes"] == 2


def test_a_node_that_cannot_sandbox_is_refused_with_the_reason(pool: cc.Pool, ray_cluster: RayCluster) -> None:
    # its corral state dir is under a directory only root can enter: `corral doctor` there says process is unavailable
    hidden = ray_cluster.root / "no-sandbox-node" / "data"
    refusing = ray_cluster.add_node(env={"CORRAL_DATA_DIR": str(hidden)})
    refused_id = node_id_of(refusing)
    _wait_for(lambda: refused_id in pool.statistics()["refused"], timeout=60)
    reason = pool.statistics()["refused"][refused_id]
    assert "not available" in reason and "not searchable" in reason, reason
    assert refused_id not in {node["node_id"] for node in pool.nodes()}
    results = list(pool.run_many([{"code": "print(1)"}] * 6, concurrency=6))
    assert all(r.accepted and r.node_id != refused_id for r in results)
    refusing.stop()


def test_a_node_that_joins_is_used_without_a_restart(pool: cc.Pool, ray_cluster: RayCluster) -> None:
    before = {node["node_id"] for node in pool.nodes()}
    joined = ray_cluster.add_node()
    new_id = node_id_of(joined)
    _wait_for(lambda: new_id in {node["node_id"] for node in pool.nodes()})
    assert new_id not in before
    with pool.sandbox(node_id=new_id) as sandbox:
        assert sandbox.run("print('on the new node')").node_id == new_id
    results = list(pool.run_many([{"code": "import time; time.sleep(0.3)"}] * 9, concurrency=9))
    assert new_id in {r.node_id for r in results} and all(r.accepted for r in results)


def _kill_mid_batch(pool: cc.Pool, victim_node, victim: str, retry_safe: bool) -> list[cc.ClusterBatchResult]:
    """A batch of 2 s items; the victim node is SIGKILLed 0.5 s after items are in flight on it."""

    def kill_when_busy() -> None:
        _wait_for(lambda: any(node["node_id"] == victim and node["in_flight"] for node in pool.nodes()))
        time.sleep(0.5)
        victim_node.kill()

    killer = threading.Thread(target=kill_when_busy)
    items = [{"code": "import time; time.sleep(2.0); print('done')"} for _ in range(12)]
    killer.start()
    results = list(pool.run_many(items, concurrency=12, retry_safe=retry_safe))
    killer.join()
    assert sorted(r.index for r in results) == list(range(12))
    return results


def test_a_node_killed_mid_batch_gives_outcome_unknown_and_the_pool_goes_on(
        pool: cc.Pool, ray_cluster: RayCluster) -> None:
    victim_node = ray_cluster.add_node()
    victim = node_id_of(victim_node)
    _wait_for(lambda: victim in {node["node_id"] for node in pool.nodes()})
    session = pool.sandbox(node_id=victim).start()
    session.run("x = 1")
    results = _kill_mid_batch(pool, victim_node, victim, retry_safe=False)
    lost = [r for r in results if r.verdict == "sandbox_error"]
    assert lost, "the killed node had items in flight"
    for result in lost:
        assert result.error.type == "SandboxCrashedError" and victim in result.error.message
        assert result.node_id is None and result.attempts == 1
    assert all(r.verdict == "accepted" for r in results if r not in lost)
    # the session pinned to the dead node says it is gone, naming the node
    with pytest.raises(NodeLostError) as caught:
        session.run("print(x)")
    assert caught.value.node_id == victim and victim in str(caught.value)
    assert isinstance(caught.value, SandboxCrashedError)
    session.close()
    # the pool keeps serving on the other nodes
    assert victim not in {node["node_id"] for node in pool.nodes()}
    after = [pool.run("print(7)") for _ in range(4)]
    assert all(r.stdout == "7\n" and r.node_id != victim for r in after)


def test_retry_safe_items_are_run_again_elsewhere(pool: cc.Pool, ray_cluster: RayCluster) -> None:
    victim_node = ray_cluster.add_node()
    victim = node_id_of(victim_node)
    _wait_for(lambda: victim in {node["node_id"] for node in pool.nodes()})
    results = _kill_mid_batch(pool, victim_node, victim, retry_safe=True)
    assert all(r.verdict == "accepted" for r in results), [r.error for r in results if not r.accepted]
    retried = [r for r in results if r.attempts > 1]
    assert retried, "the killed node had items in flight"
    assert all(r.node_id != victim for r in retried)
