"""The HTTP API of a real server on loopback: auth, validation, runs, files, lifecycle, limits."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from corral.protocol import wire
from corral.hosted.database import Database
from corral.hosted.state_dir import open_state_dir
from corral.hosted.keys import KeyStore
from serverprocess import ServerProcess

pytestmark = [pytest.mark.sandbox, pytest.mark.direct]


#: Generous bound for the server to notice something (a poll, not a timing assertion).
WAIT_S = 30.0


def _create(api: httpx.Client, **body) -> dict:
    response = api.post("/sandboxes", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.fixture
def sandbox(api: httpx.Client):
    created = _create(api, metadata={"suite": "http"})
    yield created
    api.delete(f"/sandboxes/{created['id']}")


def test_health_needs_no_credentials_and_metrics_an_api_key(server: ServerProcess, sandbox: dict):
    with server.client("") as anonymous:
        health = anonymous.get("/health").json()
        assert health["status"] == "ok" and health["isolation"]
    assert _error(httpx.get(f"{server.url}/metrics"), 401)["type"] == "AuthenticationError"
    token = {"Authorization": f"Bearer {sandbox['access_token']}"}
    _error(httpx.get(f"{server.url}/metrics", headers=token), 403)
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.key}"}).text
    assert "corral_sandboxes_live" in metrics and "corral_http_requests_total" in metrics


def test_public_metrics_need_no_credentials(tmp_path):
    public = ServerProcess(tmp_path, "--public-metrics").start()
    try:
        metrics = httpx.get(f"{public.url}/metrics")
        assert metrics.status_code == 200 and "corral_sandboxes_live" in metrics.text
    finally:
        public.stop()


def test_credentials_401_403_404(server: ServerProcess, api: httpx.Client, sandbox: dict):
    sandbox_id = sandbox["id"]
    with server.client("") as anonymous:
        assert _error(anonymous.get("/sandboxes"), 401)["type"] == "AuthenticationError"
        assert _error(anonymous.post(f"/sandboxes/{sandbox_id}/runs", json={"code": "1"}), 401)
    with server.client("ck_000000000000_" + "0" * 64) as forged:
        assert _error(forged.get("/sandboxes"), 401)["message"] == "invalid or revoked API key"
    with server.client(sandbox["access_token"][:-1] + "x") as bad_token:
        _error(bad_token.get(f"/sandboxes/{sandbox_id}"), 401)
    other = _create(api)
    try:
        with server.client(other["access_token"]) as wrong_sandbox:
            error = _error(wrong_sandbox.post(f"/sandboxes/{sandbox_id}/runs", json={"code": "1"}), 403)
            assert "another sandbox" in error["message"]
            # a token is for the data plane of its own sandbox only
            _error(wrong_sandbox.delete(f"/sandboxes/{other['id']}"), 403)
            _error(wrong_sandbox.get("/sandboxes"), 403)
    finally:
        api.delete(f"/sandboxes/{other['id']}")
    with server.client(sandbox["access_token"]) as token:
        assert token.post(f"/sandboxes/{sandbox_id}/runs", json={"code": "print(1)"}).json()["stdout"] == "1\n"
    # another key does not see the sandbox at all
    store = KeyStore(Database(open_state_dir(server.data_dir).database))
    record, second_key = store.create("second")
    with server.client(second_key) as stranger:
        _error(stranger.get(f"/sandboxes/{sandbox_id}"), 404)
        assert stranger.get("/sandboxes").json() == []
        store.revoke(record.id)
        _error(stranger.get("/sandboxes"), 401)


@pytest.mark.parametrize(("body", "fragment"), [
    ({"template": "cobol"}, "unknown template"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"limits": {"memory_mb": "512"}}, "memory_mb"),
    ({"env": {"LD_PRELOAD": "/x.so"}}, "LD_PRELOAD"),
    ({"metadata": {"bad key!": "x"}}, "metadata key"),
    ({"limits": {"memory_mb": 1}}, "memory_mb"),
    ({"limits": {"memory_mb": 64, "disk_mb": 60}}, "disk_mb"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_create_input_is_4xx_with_a_clear_message(api: httpx.Client, body: dict, fragment: str):
    response = api.post("/sandboxes", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert fragment in response.json()["error"]["message"]


def test_bad_run_and_file_input_is_4xx(api: httpx.Client, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    assert _error(api.post(f"{base}/runs", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert "code" in _error(api.post(f"{base}/runs", json={}), 422)["message"]
    assert _error(api.post(f"{base}/runs", json={"code": "1", "language": "cobol"}), 422)
    assert "NUL" in _error(api.post(f"{base}/runs", json={"code": "1", "cwd": "a\u0000b"}), 422)["message"]
    assert _error(api.post(f"{base}/runs", json={"code": "1", "stream": True, "timeout": -1}), 422)
    assert _error(api.get(f"{base}/files", params={"path": "missing"}), 404)["code"] == "not_found"
    assert _error(api.get(f"{base}/files", params={"path": ""}), 422)
    assert _error(api.delete(f"{base}/files", params={"path": "/"}), 422)
    too_big = b"x" * (24 * 1024 * 1024 + 1)  # the server's --max-file-mb is 24
    assert "over the limit" in _error(api.put(f"{base}/files", params={"path": "big"}, content=too_big), 413)["message"]

    def chunked():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(25):
            yield b"y" * (1024 * 1024)

    assert _error(api.put(f"{base}/files", params={"path": "big"}, content=chunked()), 413)
    assert not [entry["name"] for entry in api.get(f"{base}/files/list").json() if entry["name"].startswith("big")]
    assert _error(api.get("/sandboxes/sbx_nope"), 404)["type"] == "NotFoundError"
    assert _error(api.get("/sandboxes", params={"metadata": "novalue"}), 422)


def test_runs_keep_state_and_stream_ndjson(api: httpx.Client, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    assert api.post(f"{base}/runs", json={"code": "x = 41"}).json()["exit_code"] == 0
    assert api.post(f"{base}/runs", json={"code": "print(x + 1)"}).json()["stdout"] == "42\n"
    code = "import sys\nfor i in range(3): print(i, flush=True)\nprint('oops', file=sys.stderr)"
    with api.stream("POST", f"{base}/runs", json={"code": code, "stream": True}) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        events = [json.loads(line) for line in response.iter_lines() if line]
    output = "".join(e["data"] for e in events if e["type"] == "output" and e["stream"] == "stdout")
    assert output == "0\n1\n2\n" and events[-1]["type"] == "result"
    assert events[-1]["result"]["stderr"] == "oops\n"
    failed = api.post(f"{base}/runs", json={"code": "1/0"}).json()
    assert failed["exit_code"] == 1 and "ZeroDivisionError" in failed["stderr"]
    timed_out = api.post(f"{base}/runs", json={"code": "import time; time.sleep(5)", "timeout": 0.3}).json()
    assert timed_out["timed_out"]


def test_commands_plain_streamed_and_background(api: httpx.Client, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    result = api.post(f"{base}/commands", json={"cmd": "read a; echo got $a; exit 4", "stdin": "hi\n"}).json()
    assert (result["stdout"], result["exit_code"]) == ("got hi\n", 4)
    with api.stream("POST", f"{base}/commands", json={"cmd": "echo a; echo b >&2", "stream": True}) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert {(e["stream"], e["data"]) for e in events if e["type"] == "output"} == {("stdout", "a\n"), ("stderr", "b\n")}
    started = api.post(f"{base}/commands", json={"cmd": "echo bg > bg.txt", "background": True}).json()
    assert started["pid"] > 0 and started["log_path"]


def test_files_over_the_protocol_limit_stream_both_ways(api: httpx.Client, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    payload = bytes(range(256)) * (20 * 4096)  # 20 MiB: over the agent's 16 MiB per operation

    def chunked():
        for start in range(0, len(payload), 1 << 20):
            yield payload[start:start + (1 << 20)]

    written = api.put(f"{base}/files", params={"path": "large.bin", "mode": 0o640}, content=chunked()).json()
    assert written == {"path": "large.bin", "size": len(payload)}
    with api.stream("GET", f"{base}/files", params={"path": "large.bin"}) as response:
        assert response.status_code == 200
        assert b"".join(response.iter_bytes()) == payload
    entries = {e["name"]: e for e in api.get(f"{base}/files/list").json()}
    assert set(entries) == {"large.bin"} and entries["large.bin"]["mode"] & 0o777 == 0o640  # no temporary left


def test_files_upload_download_list_remove(api: httpx.Client, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    assert api.put(f"{base}/files", params={"path": "data/blob.bin", "mode": 0o600}, content=payload).json() == {
        "path": "data/blob.bin", "size": len(payload)}
    with api.stream("GET", f"{base}/files", params={"path": "data/blob.bin"}) as response:
        assert b"".join(response.iter_bytes()) == payload
    entries = api.get(f"{base}/files/list", params={"path": "data"}).json()
    assert [(e["name"], e["kind"], e["size"], e["mode"] & 0o777) for e in entries] == [
        ("blob.bin", "file", len(payload), 0o600)]
    assert _error(api.delete(f"{base}/files", params={"path": "data"}), 409)["code"] == "exists"
    assert api.delete(f"{base}/files", params={"path": "data", "recursive": "true"}).status_code == 204
    assert api.get(f"{base}/files/list").json() == []


def test_lifecycle_events_timeout_and_kill(api: httpx.Client):
    created = _create(api, timeout=600, metadata={"suite": "lifecycle", "user": "a"})
    sandbox_id = created["id"]
    extended = api.post(f"/sandboxes/{sandbox_id}/timeout", json={"timeout": 3600}).json()
    assert extended["expires_at"] > created["expires_at"]
    assert [s["id"] for s in api.get("/sandboxes", params={"metadata": ["suite=lifecycle", "user=a"], "limit": 5}).json()] == [
        sandbox_id]
    assert sandbox_id not in {s["id"] for s in api.get("/sandboxes", params={"metadata": "user=b"}).json()}
    killed = api.delete(f"/sandboxes/{sandbox_id}").json()
    assert killed["state"] == "stopped"
    assert api.delete(f"/sandboxes/{sandbox_id}").json()["state"] == "stopped"  # idempotent
    assert _error(api.post(f"/sandboxes/{sandbox_id}/runs", json={"code": "1"}), 409)["type"] == "SandboxClosedError"
    assert _error(api.post(f"/sandboxes/{sandbox_id}/timeout", json={"timeout": 5}), 409)
    events = api.get(f"/sandboxes/{sandbox_id}/events").json()
    assert [(e["kind"], e["state"]) for e in events] == [
        ("created", "creating"), ("started", "running"), ("timeout", "running"), ("killed", "stopping"),
        ("stopped", "stopped")]


def test_expired_sandboxes_are_reaped(api: httpx.Client):
    sandbox_id = _create(api, timeout=0.5)["id"]
    deadline = time.monotonic() + WAIT_S
    while api.get(f"/sandboxes/{sandbox_id}").json()["state"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    kinds = [e["kind"] for e in api.get(f"/sandboxes/{sandbox_id}/events").json()]
    assert "expired" in kinds and kinds[-1] == "stopped"


def test_sandboxes_per_key_limit_is_429(api: httpx.Client):
    live = [s for s in api.get("/sandboxes", params={"state": "running"}).json()]
    created = []
    try:
        for _ in range(6 - len(live)):
            created.append(_create(api)["id"])
        error = _error(api.post("/sandboxes", json={}), 429)
        assert error["type"] == "LimitExceededError" and "limit" in error["message"]
    finally:
        for sandbox_id in created:
            api.delete(f"/sandboxes/{sandbox_id}")
    assert api.post("/sandboxes", json={"timeout": 1}).status_code == 201


def test_concurrent_streams_limit_is_429(server: ServerProcess, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    slow = {"cmd": "echo started; sleep 30", "stream": True}
    with server.client() as first, server.client() as second, server.client() as third:
        with first.stream("POST", f"{base}/commands", json=slow) as one, \
                second.stream("POST", f"{base}/commands", json=slow) as two:
            lines = [one.iter_lines(), two.iter_lines()]  # kept: dropping an iterator closes its stream
            for stream in lines:  # both streams are open once their first line arrived
                assert next(stream).startswith('{"type":"output"')
            error = _error(third.post(f"{base}/commands", json=slow), 429)
            assert "streams" in error["message"]
            assert third.post(f"{base}/commands", json={"cmd": "echo plain"}).json()["stdout"] == "plain\n"


def test_request_body_limit_is_413(api: httpx.Client, sandbox: dict):
    huge = b"x" * (wire.MAX_FILE_BYTES + 128 * 1024)
    error = _error(api.post(f"/sandboxes/{sandbox['id']}/runs", content=huge,
                            headers={"content-type": "application/json"}), 413)
    assert "over the limit" in error["message"]


def test_revoking_a_key_revokes_the_tokens_of_its_sandboxes(server: ServerProcess):
    """Attack test: before the fix a token handed out by a revoked key kept its sandbox's data plane."""
    database = Database(open_state_dir(server.data_dir).database)
    store = KeyStore(database)
    record, key = store.create("to-revoke")
    with server.client(key) as owner:
        created = owner.post("/sandboxes", json={"timeout": 5}).json()
    with server.client(created["access_token"]) as token:
        assert token.post(f"/sandboxes/{created['id']}/runs", json={"code": "print(1)"}).status_code == 200
        store.revoke(record.id)
        database.close()
        refused = _error(token.post(f"/sandboxes/{created['id']}/runs", json={"code": "print(2)"}), 401)
        assert "revoked" in refused["message"]
        _error(token.get(f"/sandboxes/{created['id']}"), 401)
    with server.client() as api:  # the sandbox itself is not another key's to kill; it expires with its TTL
        _error(api.delete(f"/sandboxes/{created['id']}"), 404)


def test_a_streamed_command_whose_client_leaves_is_killed(api: httpx.Client, sandbox: dict):
    base = f"/sandboxes/{sandbox['id']}"
    with api.stream("POST", f"{base}/commands", json={"cmd": "echo up; exec sleep 304.75", "stream": True}) as response:
        assert json.loads(next(response.iter_lines())) == {"type": "output", "stream": "stdout", "data": "up\n"}
    deadline = time.monotonic() + 15
    while "sleep 304.75" in api.post(f"{base}/commands", json={"cmd": "ps -eo args"}).json()["stdout"]:
        assert time.monotonic() < deadline, "the command outlived the stream its client closed"
        time.sleep(0.1)
    refused = api.post(f"{base}/runs", json={"code": "1", "cwd": "/tmp/\u0000", "stream": True})  # the sandbox's check
    assert refused.headers["content-type"].startswith("application/json")  # an error, not a stream
    assert "cwd" in _error(refused, 422)["message"]
