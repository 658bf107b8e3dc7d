"""``POST /v1/batch`` and SandboxFusion's ``/run_code`` on a real server, with SandboxFusion's own client."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from serverprocess import ServerProcess


pytestmark = pytest.mark.sandbox

sandbox_fusion = pytest.importorskip("sandbox_fusion")


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("batch-server"), "--batch-runs-per-key", "2")
    process.start()
    yield process
    process.stop()


def _scoped_key(server: ServerProcess) -> str:
    return server.new_key("sandbox-fusion")


def _lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.iter_lines() if line]


def test_batch_streams_one_line_per_result(batch_server):
    items = [{"code": "import time; time.sleep(0.6); print(1)"},
             {"code": "print(int(input()) + 1)", "tests": [{"stdin": "1", "expected": "2\n"}]},
             {"code": "x", "language": "cobol"},
             {"code": "echo hi > out.txt", "language": "shell", "fetch_files": ["out.txt"]},
             "not an item"]
    with batch_server.client() as api, api.stream("POST", "/batch", json={"items": items, "concurrency": 4},
                                                  timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        lines = _lines(response)
    assert lines[-1] == {"type": "done", "count": 5}
    results = {line["result"]["index"]: line["result"] for line in lines[:-1]}
    assert [line["type"] for line in lines[:-1]] == ["result"] * 5
    assert results[0]["verdict"] == "accepted" and results[1]["verdict"] == "accepted"
    assert results[2]["verdict"] == "invalid_input" and results[4]["verdict"] == "invalid_input"
    assert base64.b64decode(results[3]["files"]["out.txt"]) == b"hi\n"
    assert lines[-2]["result"]["index"] == 0  # the slow item came last: results stream as they complete


def test_batch_refusals_are_4xx_with_retry_after_never_500(batch_server):
    with batch_server.client() as api:
        assert api.post("/batch", json={"items": [], "concurrency": 0}).status_code == 422
        assert api.post("/batch", json={"items": [], "surprise": 1}).status_code == 422
        assert httpx.post(f"{batch_server.url}/v1/batch", json={"items": []}).status_code == 401
        slow = {"items": [{"code": "import time; time.sleep(3)"}] * 2, "concurrency": 2}
        opened = []
        try:
            for _ in range(4):  # a key may have 4 batches open
                stream = api.stream("POST", "/batch", json=slow, timeout=60)
                response = stream.__enter__()
                assert response.status_code == 200
                opened.append(stream)
            refused = api.post("/batch", json={"items": [{"code": "print(1)"}]})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "LimitExceededError"
        finally:
            for stream in opened:  # disconnecting cancels the batch
                stream.__exit__(None, None, None)
        deadline = time.monotonic() + 10
        while True:  # the closed batches gave their slots back
            answer = api.post("/batch", json={"items": [{"code": "print(1)"}]}, timeout=30)
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200 and _lines(answer)[-1] == {"type": "done", "count": 1}


def _run(language: str, code: str, **fields):
    return sandbox_fusion.run_code(sandbox_fusion.RunCodeRequest(code=code, language=language, **fields),
                                   max_attempts=1, client_timeout=60)


def test_sandbox_fusion_client_all_languages(batch_server, monkeypatch):
    key = _scoped_key(batch_server)
    sandbox_fusion.set_sandbox_endpoint(f"{batch_server.url}/sandbox-fusion/{key}")
    python = _run("python", "import sys; print(sys.stdin.read().upper())", stdin="abc")
    assert python.status == "Success" and python.run_result.stdout == "ABC\n" and python.compile_result is None
    assert python.run_result.status == "Finished" and python.run_result.return_code == 0
    node = _run("nodejs", "console.log([1, 2].map(x => x * 3).join(' '))")
    assert node.status == "Success" and node.run_result.stdout == "3 6\n"
    bash = _run("bash", "cat in/data.txt; echo made > result.txt; exit 4",
                files={"in/data.txt": base64.b64encode(b"given\n").decode()}, fetch_files=["result.txt"])
    assert bash.status == "Failed" and bash.run_result.return_code == 4 and bash.run_result.stdout == "given\n"
    assert base64.b64decode(bash.files["result.txt"]) == b"made\n"
    cpp = _run("cpp", "#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a*b<<std::endl;}",
               stdin="6 7")
    assert cpp.status == "Success" and cpp.run_result.stdout == "42\n"
    assert cpp.compile_result.status == "Finished" and cpp.compile_result.return_code == 0


def test_sandbox_fusion_timeouts_compile_errors_and_refused_languages(batch_server):
    key = _scoped_key(batch_server)
    sandbox_fusion.set_sandbox_endpoint(f"{batch_server.url}/sandbox-fusion/{key}")
    slow = _run("python", "while True: pass", run_timeout=0.5)
    assert slow.status == "Failed" and slow.run_result.status == "TimeLimitExceeded"
    summary = sandbox_fusion.SummaryMapping(RunTimeout="timeout", CompileFailed="cfail")
    assert sandbox_fusion.summary_run_code_result(slow, summary) == "timeout"
    broken = _run("cpp", "int main() { return nope; }")
    assert broken.status == "Failed" and broken.run_result is None and "nope" in broken.compile_result.stderr
    assert sandbox_fusion.summary_run_code_result(broken, summary) == "cfail"
    late = _run("cpp", "#include <iostream>\nint main() { std::cout << 1; }", compile_timeout=0.05)
    assert late.status == "Failed" and late.compile_result.status == "TimeLimitExceeded" and late.run_result is None
    with pytest.raises(Exception, match="not supported"):
        _run("go", "package main")  # SandboxError: the client raises it
    answer = httpx.post(f"{batch_server.url}/sandbox-fusion/{key}/run_code", json={"code": "x", "language": "java"})
    assert answer.status_code == 200 and answer.json()["status"] == "SandboxError"
    huge = httpx.post(f"{batch_server.url}/sandbox-fusion/{key}/run_code",
                      json={"code": "x", "language": "python", "memory_limit_MB": 1 << 20})
    assert huge.json()["status"] == "SandboxError" and "at most 65536" in huge.json()["message"]


def test_sandbox_fusion_keys(batch_server):
    scoped = _scoped_key(batch_server)
    body = {"code": "print(1)", "language": "python"}
    bearer = httpx.post(f"{batch_server.url}/run_code", json=body, headers={"Authorization": f"Bearer {scoped}"},
                        timeout=30)
    assert bearer.status_code == 200 and bearer.json()["run_result"]["stdout"] == "1\n"
    full = httpx.post(f"{batch_server.url}/run_code", json=body,
                      headers={"Authorization": f"Bearer {batch_server.key}"}, timeout=30)
    assert full.status_code == 200 and full.json()["status"] == "Success"
    assert httpx.post(f"{batch_server.url}/run_code", json=body).status_code == 401  # no anonymous runs
    in_path = httpx.post(f"{batch_server.url}/sandbox-fusion/{batch_server.key}/run_code", json=body)
    assert in_path.status_code == 403  # a full key never goes in a URL
    assert httpx.post(f"{batch_server.url}/sandbox-fusion/ck_nope_0/run_code", json=body).status_code == 401
    scoped_headers = {"Authorization": f"Bearer {scoped}"}
    for method, path in [("GET", "/v1/sandboxes"), ("POST", "/v1/sandboxes"), ("POST", "/v1/batch"),
                         ("GET", "/v1/templates"), ("GET", "/v1/snapshots")]:
        answer = httpx.request(method, f"{batch_server.url}{path}", headers=scoped_headers,
                               json={} if method == "POST" else None)
        assert answer.status_code == 401, (method, path, answer.text)


def test_sandbox_fusion_overload_is_a_429_with_retry_after(batch_server):
    """2 runs per key at once and 64 waiting: the 67th concurrent run is refused, none fails otherwise."""
    key = _scoped_key(batch_server)
    url = f"{batch_server.url}/sandbox-fusion/{key}/run_code"
    statuses: list[int] = []

    def call() -> None:
        answer = httpx.post(url, json={"code": "import time; time.sleep(1)", "language": "python"}, timeout=120)
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert answer.headers["retry-after"] == "1" and answer.json()["status"] == "SandboxError"

    threads = [threading.Thread(target=call) for _ in range(70)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 429} and statuses.count(200) >= 66


def test_no_auth_only_when_asked_and_only_on_loopback(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "corral.cli", "serve", "--host", "0.0.0.0",
                              "--sandbox-fusion-no-auth", "--data-dir", str(tmp_path / "a")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "refused" in refused.stderr
    server = ServerProcess(tmp_path / "b", "--sandbox-fusion-no-auth").start()
    try:
        answer = httpx.post(f"{server.url}/run_code", json={"code": "echo $((6*7))", "language": "bash"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["run_result"]["stdout"] == "42\n"
        assert httpx.get(f"{server.url}/v1/sandboxes").status_code == 401  # the rest still needs a key
    finally:
        server.stop()


def test_a_key_in_the_path_stays_out_of_the_access_log(tmp_path):
    server = ServerProcess(tmp_path, "--log-level", "info").start()
    try:
        key = _scoped_key(server)
        answer = httpx.post(f"{server.url}/sandbox-fusion/{key}/run_code", json={"code": "true", "language": "bash"},
                            timeout=30)
        assert answer.status_code == 200
    finally:
        server.stop()
    log = server.log.read_text()
    assert "POST /sandbox-fusion/<key>/run_code" in log and key.rsplit("_", 1)[1] not in log
