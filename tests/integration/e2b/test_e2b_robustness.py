"""Every E2B route answers bad input with E2B's error shape, never a 500, over raw HTTP (no SDK)."""

from __future__ import annotations

import gzip
import json
import struct

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.hosted.database import Database
from corral.hosted.keys import KeyStore
from corral.hosted.state_dir import open_state_dir

RPCS = [f"/process.Process/{name}" for name in ("Start", "Connect", "List", "SendSignal", "SendInput",
                                                 "StreamInput", "CloseStdin", "Update")]
RPCS += [f"/filesystem.Filesystem/{name}" for name in ("Stat", "ListDir", "MakeDir", "Move", "Remove",
                                                        "CreateWatcher", "GetWatcherEvents", "RemoveWatcher",
                                                        "WatchDir")]


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def created(server, http):
    answer = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 300}, headers={"X-API-KEY": server.key})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    yield body
    http.delete(f"/sandboxes/{body['sandboxID']}", headers={"X-API-KEY": server.key})


def envd(created, token: str | None = None) -> dict:
    return {"E2b-Sandbox-Id": created["sandboxID"], "E2b-Sandbox-Port": "49983",
            "X-Access-Token": created["envdAccessToken"] if token is None else token}


def plain_error(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == status and isinstance(body["message"], str) and body["message"]


def connect_error(answer: httpx.Response, code: str) -> None:
    assert answer.status_code < 500 or code in ("unavailable", "unimplemented"), answer.text
    body = answer.json()
    assert body["code"] == code and isinstance(body["message"], str), body


def test_wrong_methods_get_e2b_bodies(http):
    for method, path in [("GET", "/execute"), ("PUT", "/v2/sandboxes"), ("GET", "/process.Process/Start"),
                         ("DELETE", "/files"), ("PATCH", "/sandboxes/sbx_x")]:
        plain_error(http.request(method, path), 405)


def test_another_keys_sandbox_is_not_found(http, server, created):
    database = Database(open_state_dir(server.data_dir).database)
    _, other_key = KeyStore(database).create("other")
    database.close()
    theirs = {"X-API-KEY": other_key}
    sandbox_id = created["sandboxID"]
    for method, path in [("GET", f"/sandboxes/{sandbox_id}"), ("DELETE", f"/sandboxes/{sandbox_id}"),
                         ("POST", f"/sandboxes/{sandbox_id}/timeout"), ("POST", f"/sandboxes/{sandbox_id}/pause"),
                         ("POST", f"/v2/sandboxes/{sandbox_id}/connect")]:
        plain_error(http.request(method, path, json={"timeout": 10}, headers=theirs), 404)
    assert sandbox_id not in [item["sandboxID"] for item in http.get("/v2/sandboxes", headers=theirs).json()]
    # the data plane takes the owner's key as a token (what connect hands out), never another key
    answer = http.post("/filesystem.Filesystem/Stat", json={"path": "/"}, headers=envd(created, other_key))
    connect_error(answer, "unavailable")
    answer = http.post("/filesystem.Filesystem/Stat", json={"path": "/"}, headers=envd(created, server.key))
    assert answer.status_code == 200
    plain_error(http.get(f"/sandboxes/{sandbox_id}/metrics", headers={"X-API-KEY": server.key}), 501)


def test_control_plane_credentials(http, server):
    plain_error(http.post("/v2/sandboxes", json={}), 401)
    plain_error(http.post("/v2/sandboxes", json={}, headers={"X-API-KEY": "ck_abc_def"}), 401)
    plain_error(http.get("/v2/sandboxes", headers={"X-API-KEY": "not a key"}), 401)
    plain_error(http.get("/sandboxes/sbx_x", headers={"Authorization": f"Bearer {server.key}"}), 401)


@pytest.mark.parametrize("body", [b"{", b"[]", b'"x"', b'{"timeout": "long"}', b'{"timeout": -1}',
                                  b'{"timeout": 1e9}', b'{"templateID": 5}', b'{"metadata": {"bad key!": "v"}}',
                                  b'{"metadata": []}', b'{"envVars": {"A": 1}}', b'{"templateID": ""}',
                                  b'{"allow_internet_access": true}', b'{"network": {"allowOut": ["1.1.1.1"]}}',
                                  b'{"volumeMounts": [{"name": "v", "path": "/v"}]}'])
def test_create_refuses_bad_bodies(http, server, body):
    plain_error(http.post("/v2/sandboxes", content=body, headers={"X-API-KEY": server.key,
                                                                   "Content-Type": "application/json"}), 400)


def test_unknown_template_and_sandboxes_are_404(http, server):
    key = {"X-API-KEY": server.key}
    plain_error(http.post("/v2/sandboxes", json={"templateID": "no-such"}, headers=key), 404)
    for method, path in [("GET", "/sandboxes/sbx_none"), ("DELETE", "/sandboxes/sbx_none"),
                         ("POST", "/sandboxes/sbx_none/timeout"), ("POST", "/sandboxes/sbx_none/pause"),
                         ("POST", "/v2/sandboxes/sbx_none/connect"), ("POST", "/sandboxes/sbx_none/connect")]:
        plain_error(http.request(method, path, json={"timeout": 10}, headers=key), 404)


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "nextToken=%%%", "nextToken=bm9wZQ", "state=dead"])
def test_list_refuses_bad_queries(http, server, query):
    plain_error(http.get(f"/v2/sandboxes?{query}", headers={"X-API-KEY": server.key}), 400)


def test_timeout_refuses_bad_values(http, server, created):
    path = f"/sandboxes/{created['sandboxID']}/timeout"
    for body in (b'{"timeout": "x"}', b'{"timeout": 0}', b"[", b'{"timeout": 1e12}'):
        plain_error(http.post(path, content=body, headers={"X-API-KEY": server.key}), 400)


@pytest.mark.parametrize("path", RPCS)
def test_rpcs_need_the_sandbox_token(http, created, path):
    connect_error(http.post(path, json={}, headers=envd(created, "")), "unauthenticated")
    connect_error(http.post(path, json={}, headers=envd(created, "st_other_secret")), "unauthenticated")
    connect_error(http.post(path, json={}, headers=envd(created, created["envdAccessToken"] + "x")),
                  "unauthenticated")


@pytest.mark.parametrize("path", RPCS)
@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"process": 5}', b'{"path": 7}', b'{"process": {"pid": "x"}}',
                                  b'{"watcherId": []}', b'{"input": "x", "process": {"pid": 1}}'])
def test_rpcs_refuse_malformed_messages(http, created, path, body):
    answer = http.post(path, content=body, headers={**envd(created), "Content-Type": "application/json"})
    if path.endswith("/List") and body.startswith(b"{\""):  # List's request has no fields: unknown ones are ignored
        assert answer.status_code == 200
        return
    assert answer.status_code in (400, 404), answer.text
    assert answer.json()["code"] in ("invalid_argument", "not_found")


def test_streams_refuse_bad_envelopes(http, created):
    headers = {**envd(created), "Content-Type": "application/connect+json"}
    start = "/process.Process/Start"
    oversized = struct.pack(">BI", 0, 64 * 1024 * 1024)
    for body in (oversized, b"\x01\x00\x00\x00\x02{}", b"\x00\x00\x00\x00\x05[1,2]", b"\x00\x00\x00", b""):
        connect_error(http.post(start, content=body, headers=headers), "invalid_argument")


def test_a_dead_sandbox_answers_502_was_not_found(http, server):
    answer = http.post("/v2/sandboxes", json={"timeout": 60}, headers={"X-API-KEY": server.key})
    dead = answer.json()
    http.delete(f"/sandboxes/{dead['sandboxID']}", headers={"X-API-KEY": server.key})
    answer = http.post("/filesystem.Filesystem/Stat", json={"path": "/"}, headers=envd(dead))
    connect_error(answer, "unavailable")  # the SDK: SandboxNotRunningException
    assert answer.status_code == 503 and "was not found" in answer.json()["message"]
    plain_error(http.get("/files?path=a", headers=envd(dead)), 502)
    answer = http.get("/health", headers={"E2b-Sandbox-Id": dead["sandboxID"]})
    plain_error(answer, 502)


def test_files_refuse_bad_requests(http, created):
    plain_error(http.get("/files", headers=envd(created)), 400)
    plain_error(http.get("/files?path=/home/user/none", headers=envd(created)), 404)
    plain_error(http.get("/files?path=/home/user", headers=envd(created)), 400)
    plain_error(http.get("/files?path=x", headers=envd(created, "")), 401)
    plain_error(http.post("/files", content=b"x", headers={**envd(created),
                                                           "Content-Type": "application/octet-stream"}), 400)
    plain_error(http.post("/files?path=a", content=b"--zz\r\nbroken",
                          headers={**envd(created), "Content-Type": "multipart/form-data; boundary=zz"}), 400)
    plain_error(http.post("/files?path=a", files={"other": ("a", b"x")}, headers=envd(created)), 400)
    plain_error(http.get("/files?path=a", headers={**envd(created), "Authorization": "Basic cm9vdDo="}), 403)
    raw = {**envd(created), "Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
    plain_error(http.post("/files?path=g", content=b"not gzip at all", headers=raw), 400)
    plain_error(http.post("/files?path=g", content=gzip.compress(b"x" * 1000)[:20], headers=raw), 400)
    plain_error(http.post("/files?path=g", content=b"x", headers={**raw, "Content-Encoding": "br"}), 400)


def test_a_gzip_bomb_stops_at_the_file_limit(http, created):
    bomb = gzip.compress(b"\0" * (25 * 1024 * 1024))  # 25 MiB inflated; the server's limit is 24 MiB
    raw = {**envd(created), "Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
    plain_error(http.post("/files?path=bomb", content=bomb, headers=raw), 413)
    assert http.post("/filesystem.Filesystem/Stat", json={"path": "bomb"}, headers=envd(created)).status_code == 404


def test_execute_refuses_bad_requests(http, created):
    ci = {**envd(created), "E2b-Sandbox-Port": "49999"}
    for body, status in [(b"{", 400), (b'{"code": 5}', 400), (b'{"code": "1", "language": "cobol"}', 400),
                         (b'{"code": "1", "language": "python", "context_id": "python"}', 400),
                         (b'{"code": "1", "context_id": "nope"}', 404)]:
        plain_error(http.post("/execute", content=body, headers=ci), status)
    plain_error(http.post("/execute", json={"code": "1"}, headers={**ci, "X-Access-Token": ""}), 401)
    plain_error(http.post("/contexts", content=b"[", headers=ci), 400)
    plain_error(http.post("/contexts", json={"language": "cobol"}, headers=ci), 400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([*RPCS, "/files", "/execute", "/contexts", "/v2/sandboxes"]),
       body=st.one_of(st.binary(max_size=64),
                      st.dictionaries(st.sampled_from(["path", "process", "pid", "code", "input", "depth",
                                                       "timeout", "templateID", "watcherId", "signal"]),
                                      st.one_of(st.none(), st.integers(), st.text(max_size=8),
                                                st.lists(st.integers(), max_size=2),
                                                st.dictionaries(st.sampled_from(["pid", "cmd", "size"]),
                                                                st.integers(-2, 2), max_size=2)),
                                      max_size=3).map(lambda value: json.dumps(value).encode())),
       enveloped=st.booleans())
def test_fuzzed_requests_never_get_a_500(http, created, server, path, body, enveloped):
    headers = {**envd(created), "X-API-KEY": server.key,
               "Content-Type": "application/connect+json" if enveloped else "application/json"}
    if enveloped:
        body = struct.pack(">BI", 0, len(body)) + body
    if path in ("/process.Process/Start", "/filesystem.Filesystem/WatchDir"):
        headers["connect-timeout-ms"] = "2000"
    answer = http.post(path, content=body, headers=headers)
    assert answer.status_code < 500 or answer.status_code == 501, (path, body, answer.text)
    if answer.status_code >= 400:
        assert set(answer.json()) >= {"code", "message"}
    if path == "/v2/sandboxes" and answer.status_code == 201:
        http.delete(f"/sandboxes/{answer.json()['sandboxID']}", headers={"X-API-KEY": server.key})


def test_the_key_quota_is_a_429_the_sdk_does_not_retry(http, server, created):
    key = {"X-API-KEY": server.key}
    made = []
    try:
        while True:
            answer = http.post("/v2/sandboxes", json={"timeout": 60}, headers=key)
            if answer.status_code != 201:
                break
            made.append(answer.json()["sandboxID"])
            assert len(made) < 20, "the server's quota (8) was not applied"
        plain_error(answer, 429)
        assert answer.headers["Should-Retry"] == "false"
    finally:
        for sandbox_id in made:
            http.delete(f"/sandboxes/{sandbox_id}", headers=key)
