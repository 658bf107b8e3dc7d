"""Strings that are not valid Unicode, in and out: refused at the boundary (422), never a 500 or an orphan.

JSON's ``\\ud800`` escape can carry a lone surrogate, which UTF-8 cannot encode; user code can
create file names that are not UTF-8. Attack tests: before the fix a create with such metadata
answered 500 yet left a sandbox running whose id the client never got (and every list of that
key answered 500 from then on), a template step with such content answered 500, and listing a
directory holding such a name answered 500.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from corral import Sandbox
from corral.hosted.database import Database
from corral.hosted.keys import KEY_PREFIX, split
from corral.contract.states import SandboxState
from corral.hosted.records import Records
from corral.hosted.state_dir import open_state_dir
from serverprocess import ServerProcess

pytestmark = pytest.mark.sandbox

LONE = "\ud800"


def _post_raw(api: httpx.Client, path: str, body: object) -> httpx.Response:
    """POST ``body`` as JSON with its lone surrogates as ``\\udXXX`` escapes (what a hostile client sends)."""
    return api.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def _command_output(api: httpx.Client, sandbox_id: str, cmd: str) -> str:
    result = api.post(f"/sandboxes/{sandbox_id}/commands", json={"cmd": cmd}).json()
    assert result["exit_code"] == 0, result
    return result["stdout"]


def _running(api: httpx.Client) -> int:
    return api.get("/health").json()["sandboxes_running"]


def test_create_with_a_lone_surrogate_is_refused_and_starts_nothing(api: httpx.Client):
    before = _running(api)
    for body in ({"template": "python", "metadata": {"k": LONE}}, {"metadata": {LONE: "v"}},
                 {"env": {"A": "x" + LONE}}, {"template": LONE}):
        response = _post_raw(api, "/sandboxes", body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["type"] == "InvalidInputError" and "lone surrogate" in error["message"], error
    assert _running(api) == before, "a refused create left a sandbox running"
    assert api.get("/sandboxes").status_code == 200


def test_template_bodies_with_lone_surrogates_are_refused(api: httpx.Client):
    step = {"name": "bad", "steps": [{"files": {"a.txt": "x" + LONE + "y"}}]}
    response = _post_raw(api, "/templates", step)
    assert response.status_code == 422, response.text
    assert "lone surrogate" in response.json()["error"]["message"]
    assert _post_raw(api, "/templates", {"name": "bad", "steps": [{"run": "echo \udfff"}]}).status_code == 422


def test_file_names_that_are_not_utf8_are_listed_safely(server: ServerProcess, api: httpx.Client):
    created = api.post("/sandboxes", json={}).json()
    sandbox_id = created["id"]
    try:
        command = api.post(f"/sandboxes/{sandbox_id}/commands",
                           json={"cmd": "mkdir odd && touch $'odd/\\xff\\xfe' odd/plain.txt"}).json()
        assert command["exit_code"] == 0, command
        response = api.get(f"/sandboxes/{sandbox_id}/files/list", params={"path": "odd"})
        assert response.status_code == 200, response.text
        entries = {entry["name"]: entry for entry in response.json()}
        assert set(entries) == {"\ufffd\ufffd", "plain.txt"}
        assert base64.b64decode(entries["\ufffd\ufffd"]["name_bytes"]) == b"\xff\xfe"
        assert entries["plain.txt"]["name_bytes"] is None
        # the Python client gives the same name in both modes: Python's surrogateescape form
        hosted = Sandbox.connect(sandbox_id, server=server.url, api_key=server.key)
        assert {entry.name for entry in hosted.files.list("odd")} == {"\udcff\udcfe", "plain.txt"}
        # and the file API addresses it: its bytes percent-encoded over HTTP, the same name from Python
        raw = httpx.get(f"{server.url}/v1/sandboxes/{sandbox_id}/files?path=odd/%FF%FE",
                        headers={"Authorization": f"Bearer {server.key}"})
        assert raw.status_code == 200 and raw.content == b""
        hosted.files.write("odd/\udcff\udcfe", b"written back")
        assert hosted.files.read("odd/\udcff\udcfe") == b"written back"
        assert _command_output(api, sandbox_id, "cat $'odd/\\xff\\xfe'") == "written back"
        hosted.files.remove("odd/\udcff\udcfe")
        assert {entry.name for entry in hosted.files.list("odd")} == {"plain.txt"}
        assert api.delete(f"/sandboxes/{sandbox_id}/files", params={"path": "odd", "recursive": "true"}).status_code == 204
    finally:
        api.delete(f"/sandboxes/{sandbox_id}")


def _with_surrogate(value: object, choice: int) -> tuple[object, bool]:
    """``value`` with its ``choice``-th string (key or value, walk order) made invalid; (new value, replaced)."""
    counter = [choice]

    def walk(item):
        if isinstance(item, str):
            counter[0] -= 1
            return item + LONE if counter[0] == -1 else item
        if isinstance(item, dict):
            out = {}
            for key, sub in item.items():
                counter[0] -= 1
                new_key = key + LONE if counter[0] == -1 else key
                out[new_key] = walk(sub)
            return out
        if isinstance(item, list):
            return [walk(sub) for sub in item]
        return item

    result = walk(value)
    return result, counter[0] < 0


def test_every_operation_refuses_lone_surrogates(server: ServerProcess, api: httpx.Client):
    """Schemathesis' valid bodies of every operation, with one string made invalid: 422, never a 5xx."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    sandbox_id = api.post("/sandboxes", json={}).json()["id"]
    snapshot_source = api.post("/sandboxes", json={}).json()["id"]
    snapshot_id = api.post(f"/sandboxes/{snapshot_source}/pause").json()["id"]
    ids = {"sandbox_id": sandbox_id, "snapshot_id": snapshot_id, "key": server.new_key("sandbox-fusion")}
    auth = {"Authorization": f"Bearer {server.key}"}
    tried: set[str] = set()
    failures = []
    try:
        for operation in (result.ok() for result in schema.get_all_operations()):
            if operation.body is None or not len(operation.body):
                continue
            wanted = {name: value for name, value in ids.items() if f"{{{name}}}" in operation.path}

            @given(case=operation.as_strategy(GenerationMode.POSITIVE, path_parameters=wanted),
                   choice=st.integers(min_value=0, max_value=40))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case, choice):
                if not isinstance(case.body, dict):
                    return
                body, replaced = _with_surrogate(case.body, choice)
                if not replaced:
                    return
                path = case.formatted_path
                response = httpx.request(operation.method.upper(), server.url + path, params=case.query,
                                         content=json.dumps(body).encode(), timeout=60,
                                         headers={"content-type": "application/json", **auth})
                tried.add(f"{operation.method.upper()} {operation.path}")
                if response.status_code != 422 or "lone surrogate" not in response.text:
                    failures.append(f"{operation.method.upper()} {path} {body!r}: {response.status_code} "
                                    f"{response.text[:300]}")

            check()
    finally:
        for info in api.get("/sandboxes", params={"state": "running"}).json():
            api.delete(f"/sandboxes/{info['id']}")
    assert len(tried) >= 4, tried  # create, runs, commands, templates at least (some bodies hold no string)
    assert not failures, "\n".join(failures[:10])


def test_a_record_written_before_the_fix_still_lists(server: ServerProcess, api: httpx.Client):
    """A sandbox recorded with a lone surrogate in its metadata (as the old server did) no longer breaks lists."""
    owner, _ = split(server.key, KEY_PREFIX)
    database = Database(open_state_dir(server.data_dir).database)
    records = Records(database)
    records.insert_sandbox(sandbox_id="sbx_0ld5urr0gate0000", owner=owner, template="python",
                           spec={"language": "python"}, metadata={"k": "x" + LONE}, token_hash="0" * 64,
                           process_tag="sb-1-1-gone", expires_at=0.0, resumed_from=None)
    records.transition("sbx_0ld5urr0gate0000", SandboxState.STOPPED, "stopped", "test")
    database.close()
    listed = api.get("/sandboxes")
    assert listed.status_code == 200, listed.text
    assert {"k": "x\ufffd"} in [info["metadata"] for info in listed.json()]


def test_query_bytes_that_are_not_utf8_never_give_a_5xx(server: ServerProcess, api: httpx.Client):
    """Percent-encoded bytes of a surrogate (CESU-8) or of no character at all, in every query parameter."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    sandbox_id = api.post("/sandboxes", json={}).json()["id"]
    auth = {"Authorization": f"Bearer {server.key}"}
    checked = 0
    try:
        for operation in (result.ok() for result in schema.get_all_operations()):
            names = [parameter.name for parameter in operation.query]
            path = operation.path.replace("{sandbox_id}", sandbox_id).replace("{snapshot_id}", "snap_none")
            for name in names:
                for raw in ("%ED%A0%80", "%FF%FE", "a%00b"):
                    response = httpx.request(operation.method.upper(), f"{server.url}{path}?{name}={raw}",
                                             headers=auth, timeout=60)
                    assert response.status_code < 500, (operation.method, path, name, raw, response.text)
                    checked += 1
    finally:
        api.delete(f"/sandboxes/{sandbox_id}")
    assert checked >= 20
