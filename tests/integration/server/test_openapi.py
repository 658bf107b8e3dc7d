"""Schemathesis against the running server: every operation of its OpenAPI document, generated input.

Each operation gets schema-valid and schema-invalid input, with its path parameters pointing at a
real running sandbox and a real snapshot, so the routes' own logic runs. No answer may be a 5xx,
and every answer must match the document (status code, content type, schema), refuse input the
document rules out, and so on: every schemathesis check but one, and one more in a few cases. Left out:
``positive_data_acceptance`` (input the document allows must succeed): some rules are semantic and
not in the document on purpose (the blocklist of environment variables, a template that exists,
disk_mb fitting in memory_mb, a sandbox that is running); those answers are 4xx with a message.
``negative_data_rejection`` for the invalid cases that remove the Authorization header, as the
credentials this test adds to every request undo that, so the server rightly accepts them.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

#: Generated cases per operation and mode (a sandbox start is real work; CI time is bounded).
EXAMPLES = 20


def _fresh_targets(api: httpx.Client) -> dict[str, str]:
    """Kill what earlier cases left running; a running sandbox and a snapshot for the next operation."""
    for info in api.get("/sandboxes", params={"state": "running"}).json():
        api.delete(f"/sandboxes/{info['id']}")
    paused = api.post("/sandboxes", json={}).json()["id"]
    api.put(f"/sandboxes/{paused}/files", params={"path": "f.txt"}, content=b"x")
    snapshot = api.post(f"/sandboxes/{paused}/pause").json()["id"]
    return {"sandbox_id": api.post("/sandboxes", json={}).json()["id"], "snapshot_id": snapshot}


def _drops_credentials(case) -> bool:
    """True for a generated invalid case whose mutations include removing the Authorization header."""
    data = getattr(getattr(getattr(case, "meta", None), "phase", None), "data", None)
    for mutation in getattr(data, "mutations", None) or ():
        original = getattr(mutation, "original_value", None)
        names = [getattr(mutation, "parameter", None), *(original if isinstance(original, list) else [original])]
        if any(isinstance(name, str) and name.lower() == "authorization" for name in names):
            return True
    return False


def test_every_operation_answers_as_documented(server, api):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.key}"}
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            targets = _fresh_targets(api)
            wanted = {name: value for name, value in targets.items() if f"{{{name}}}" in operation.path}

            @given(case=operation.as_strategy(mode, path_parameters=wanted))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                excluded = [positive_data_acceptance, *([negative_data_rejection] if _drops_credentials(case) else [])]
                case.call_and_validate(base_url=server.url, headers=headers, excluded_checks=excluded)

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.path  # no input at all: nothing to break
            except Exception as exc:  # collect every operation's failure, not only the first
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
