"""``corral serve --ray``: one HTTP endpoint, sandboxes on cluster nodes, placements recorded, pause/resume across nodes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import RayCluster, node_id_of

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'corral[ray]')")

from corral import Sandbox
from corral.errors import SandboxCrashedError
from corral.hosted.database import Database
from corral.hosted.state_dir import open_state_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from serverprocess import ServerProcess  # noqa: E402  (the server suite's real `corral serve` child)

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.levels("process"), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster_server(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("cluster-server"), "--ray", ray_cluster.address,
                           "--isolation", "process")
    server.start()
    yield server
    server.stop()


def _placements(server: ServerProcess) -> dict[str, str]:
    database = Database(open_state_dir(server.data_dir).database)
    try:
        return {row["sandbox_id"]: row["node_id"] for row in database.query("SELECT * FROM cluster_placements")}
    finally:
        database.close()


def test_served_sandboxes_run_on_recorded_cluster_nodes(cluster_server: ServerProcess) -> None:
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    sandboxes = [Sandbox.create("python", server=cluster_server.url, api_key=cluster_server.key) for _ in range(3)]
    try:
        for number, sandbox in enumerate(sandboxes):
            sandbox.run(f"x = {number}")
            assert sandbox.run("print(x * 10)").stdout == f"{number * 10}\n"
            sandbox.files.write("notes/a.txt", b"hello")
            assert sandbox.files.read("notes/a.txt") == b"hello"
            assert [entry.name for entry in sandbox.files.list("notes")] == ["a.txt"]
            assert sandbox.commands.run("cat notes/a.txt").stdout == "hello"
        streamed = list(sandboxes[0].stream("import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.2)"))
        assert [item.data for item in streamed[:-1]] == ["0\n", "1\n", "2\n"] and streamed[-1].stdout == "0\n1\n2\n"
        placements = _placements(cluster_server)
        assert {sandbox.id for sandbox in sandboxes} <= set(placements)
        assert {placements[sandbox.id] for sandbox in sandboxes} <= alive
        assert len({placements[sandbox.id] for sandbox in sandboxes}) >= 2  # least loaded first: spread
    finally:
        for sandbox in sandboxes:
            sandbox.kill()


def test_a_terminal_is_routed_to_the_sandbox_node(cluster_server: ServerProcess) -> None:
    sandbox = Sandbox.create("python", server=cluster_server.url, api_key=cluster_server.key)
    try:
        sandbox.files.write("where.txt", b"on its node")
        with sandbox.terminal(command="read line; echo got:$line; cat where.txt; exit 3") as terminal:
            terminal.write("hi\n")
            seen = terminal.read_until("got:hi")  # may already hold what came after it
            seen += "".join(terminal)
            assert "got:hi" in seen and "on its node" in seen and terminal.exit_code == 3
    finally:
        sandbox.kill()


def test_pause_and_resume_across_nodes(cluster_server: ServerProcess) -> None:
    sandbox = Sandbox.create("python", server=cluster_server.url, api_key=cluster_server.key)
    sandbox.files.write("keep.txt", b"kept across nodes")
    snapshot = sandbox.pause()
    resumed = Sandbox.resume(snapshot.id, server=cluster_server.url, api_key=cluster_server.key)
    try:
        assert resumed.files.read("keep.txt") == b"kept across nodes"
        assert resumed.id in _placements(cluster_server)
    finally:
        resumed.kill()


def test_a_served_sandbox_on_a_lost_node_is_reported_and_recorded(cluster_server: ServerProcess,
                                                                    ray_cluster: RayCluster) -> None:
    victim_node = ray_cluster.add_node()
    victim = node_id_of(victim_node)
    created = []
    deadline = time.monotonic() + 60
    while victim not in {_placements(cluster_server).get(sandbox.id) for sandbox in created}:
        assert time.monotonic() < deadline, "no sandbox was placed on the new node"
        created.append(Sandbox.create("python", server=cluster_server.url, api_key=cluster_server.key))
        time.sleep(0.3)  # the server's host on the new node takes a moment; then it is the least loaded
    on_victim = next(sandbox for sandbox in created if _placements(cluster_server)[sandbox.id] == victim)
    on_victim.run("x = 1")
    victim_node.kill()
    with pytest.raises(SandboxCrashedError) as caught:
        on_victim.run("print(x)")
    assert victim in str(caught.value)
    with cluster_server.client() as client:
        events = client.get(f"/sandboxes/{on_victim.id}/events").json()
        assert client.get(f"/sandboxes/{on_victim.id}").json()["state"] == "broken"
    assert any(event["kind"] == "crashed" and victim in event["message"] for event in events), events
    for sandbox in created:
        if sandbox is not on_victim:
            assert sandbox.run("print('still here')").stdout == "still here\n"
            sandbox.kill()
