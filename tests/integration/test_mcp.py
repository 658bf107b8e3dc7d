"""``corral mcp`` as a subprocess, driven by the official MCP SDK's own client over stdio and streamable HTTP.

Locally (sandboxes in the MCP server's process) and against a real ``corral serve`` on loopback. Every
test checks that the sandboxes it made are gone once the MCP server exits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ImageContent
from server.serverprocess import ServerProcess, free_port, host_processes_with

from corral import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.levels("process"), pytest.mark.timeout(180)]

TOOLS = {"create_sandbox", "list_sandboxes", "kill_sandbox", "run_code", "run_command", "write_file", "read_file",
         "list_files"}
#: The smallest valid PNG: one transparent pixel.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
                       "rkJggg==")


@pytest.fixture(autouse=True)
def local_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local mode's database and snapshots in the test's own directory."""
    monkeypatch.setenv("CORRAL_LOCAL_DIR", str(tmp_path / "local"))


def _command(*options: str) -> list[str]:
    return [sys.executable, "-m", "corral.cli", "mcp", *options]


@contextlib.asynccontextmanager
async def stdio_session(*options: str, env: dict[str, str] | None = None,
                        pid_file: Path | None = None) -> AsyncIterator[ClientSession]:
    """A client session with ``corral mcp OPTIONS`` started as a child over stdio; the child ends with it.

    ``pid_file``: the child writes its pid there first (through a shell that then becomes it).
    """
    command = _command(*options)
    if pid_file is not None:
        command = ["sh", "-c", f'echo $$ > "{pid_file}" && exec "$@"', "sh", *command]
    parameters = StdioServerParameters(command=command[0], args=command[1:], env={**os.environ, **(env or {})})
    with open(os.devnull, "w") as quiet:
        async with stdio_client(parameters, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def call(session: ClientSession, tool: str, **arguments: object) -> str:
    """Call a tool that must succeed; its text."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    return text(result)


async def error(session: ClientSession, tool: str, **arguments: object) -> str:
    """Call a tool that must fail with an MCP tool error; its message."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, text(result)
    return text(result)


async def create(session: ClientSession, **arguments: object) -> str:
    result = await session.call_tool("create_sandbox", arguments)
    assert not result.is_error, text(result)
    sandbox_id = result.structured_content["sandbox_id"]
    assert f"sandbox_id: {sandbox_id}" in text(result)
    return sandbox_id


async def start_marker(session: ClientSession, sandbox_id: str) -> str:
    """Start a background process in the sandbox whose command line carries a unique marker; the marker."""
    marker = f"corral-mcp-test-{uuid.uuid4().hex}"
    answer = await call(session, "run_command", sandbox_id=sandbox_id, command=f"sleep 300; : {marker}",
                        background=True)
    assert "started in the background" in answer
    deadline = time.monotonic() + 10
    while not host_processes_with(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert host_processes_with(marker), "the background process never showed up"
    return marker


def assert_gone(marker: str, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes_with(marker) == [], "a sandbox process outlived the MCP server"


async def exercise(session: ClientSession) -> str:
    """Every tool once, the errors a model makes, and a kill; returns the id of a new sandbox left running."""
    assert {tool.name for tool in (await session.list_tools()).tools} == TOOLS
    sandbox_id = await create(session)
    assert sandbox_id in await call(session, "list_sandboxes")

    # a session: state kept between calls
    assert "exit code: 0" in await call(session, "run_code", sandbox_id=sandbox_id, code="import math\nx = 41")
    answer = await call(session, "run_code", sandbox_id=sandbox_id, code="print(x + 1, math.floor(2.5))")
    assert "--- stdout ---\n42 2" in answer
    failing = await call(session, "run_code", sandbox_id=sandbox_id, code="raise ValueError('bad value')")
    assert "exit code: 1" in failing and "ValueError: bad value" in failing  # the code failing is data, not an error
    assert "43" in await call(session, "run_code", sandbox_id=sandbox_id, code="print(x + 2)")
    js = await call(session, "run_code", sandbox_id=sandbox_id, code="console.log(6 * 7)", language="javascript")
    assert "42" in js

    # a command, sharing the files
    answer = await call(session, "run_command", sandbox_id=sandbox_id, command="echo $((6 * 7)) $GREETING; pwd; cat",
                        env={"GREETING": "hi"}, stdin="from stdin")
    assert "42 hi\n/home/user\nfrom stdin" in answer
    answer = await call(session, "run_command", sandbox_id=sandbox_id, command="echo oops >&2; exit 3")
    assert "exit code: 3" in answer and "--- stderr ---\noops" in answer

    # files
    assert "wrote 6 bytes" in await call(session, "write_file", sandbox_id=sandbox_id, path="data/in.txt",
                                         content="hello\n")
    assert await call(session, "read_file", sandbox_id=sandbox_id, path="data/in.txt") == "hello\n"
    listing = await call(session, "list_files", sandbox_id=sandbox_id, path="data")
    assert "data: 1 entry" in listing and "in.txt" in listing and "6" in listing
    assert "data/" in await call(session, "list_files", sandbox_id=sandbox_id)
    assert "hello" in await call(session, "run_code", sandbox_id=sandbox_id, code="print(open('data/in.txt').read())")
    big = "".join(f"line {number}\n" for number in range(40_000))  # a request of ~400 KB through stdin
    await call(session, "write_file", sandbox_id=sandbox_id, path="big.txt", content=big)
    assert f"{len(big)} big.txt" in await call(session, "run_command", sandbox_id=sandbox_id, command="wc -c big.txt")
    binary = bytes(range(256))
    await call(session, "write_file", sandbox_id=sandbox_id, path="blob.bin",
               content=base64.b64encode(binary).decode(), encoding="base64")
    assert base64.b64decode(await call(session, "read_file", sandbox_id=sandbox_id, path="blob.bin",
                                       encoding="base64")) == binary
    assert "not UTF-8" in await error(session, "read_file", sandbox_id=sandbox_id, path="blob.bin")
    await call(session, "write_file", sandbox_id=sandbox_id, path="dot.png", content=base64.b64encode(PNG).decode(),
               encoding="base64")
    image = (await session.call_tool("read_file", {"sandbox_id": sandbox_id, "path": "dot.png"})).content
    assert isinstance(image[0], ImageContent) and image[0].mime_type == "image/png"
    assert base64.b64decode(image[0].data) == PNG

    # errors: unknown ids, bad input, timeouts
    assert "unknown sandbox id 'sbx_nope'" in await error(session, "run_code", sandbox_id="sbx_nope", code="1")
    assert "unknown sandbox id" in await error(session, "read_file", sandbox_id="sbx_nope", path="a")
    assert "code" in await error(session, "run_code", sandbox_id=sandbox_id, code=3)
    assert "sandbox_id" in await error(session, "run_code", code="print(1)")
    assert "InvalidInputError" in await error(session, "run_code", sandbox_id=sandbox_id, code="1", timeout=-1)
    assert "LD_PRELOAD is blocked" in await error(session, "run_command", sandbox_id=sandbox_id, command="true",
                                                  env={"LD_PRELOAD": "/tmp/x.so"})
    assert "InvalidInputError" in await error(session, "write_file", sandbox_id=sandbox_id, path="", content="x")
    assert "Permission denied" in await error(session, "write_file", sandbox_id=sandbox_id, path="/etc/x",
                                              content="x")
    assert "FileOperationError" in await error(session, "read_file", sandbox_id=sandbox_id, path="missing.txt")
    assert "not valid base64" in await error(session, "write_file", sandbox_id=sandbox_id, path="b", content="!!",
                                             encoding="base64")
    assert "no stdin or timeout" in await error(session, "run_command", sandbox_id=sandbox_id, command="true",
                                                background=True, timeout=1)
    timed_out = await error(session, "run_code", sandbox_id=sandbox_id, code="print('before', flush=True)\n"
                            "while True: pass", timeout=1)
    assert "timed out after 1 s" in timed_out and "before" in timed_out and "interpreter was restarted" in timed_out
    assert "timed out" in await error(session, "run_command", sandbox_id=sandbox_id, command="sleep 30", timeout=0.5)

    # kill: the id is gone
    assert f"killed {sandbox_id}" in await call(session, "kill_sandbox", sandbox_id=sandbox_id)
    assert "unknown sandbox id" in await error(session, "run_code", sandbox_id=sandbox_id, code="1")
    assert "no sandbox" in await call(session, "list_sandboxes")

    return await create(session)


async def test_stdio_every_tool_and_the_sandboxes_die_with_the_server():
    async with stdio_session() as session:
        left = await exercise(session)
        marker = await start_marker(session, left)
    assert_gone(marker)


async def test_the_cap_on_sandboxes_and_output_truncation():
    async with stdio_session("--max-sandboxes", "1", "--max-output-chars", "400") as session:
        first = await create(session)
        refused = await error(session, "create_sandbox")
        assert "LimitExceededError" in refused and "1 sandboxes" in refused and first in refused
        answer = await call(session, "run_code", sandbox_id=first, code="print('a' * 3000 + 'END')")
        assert len(answer) < 600 and "characters left out" in answer and answer.rstrip().endswith("END")
        await call(session, "write_file", sandbox_id=first, path="big.txt", content="b" * 5000)
        assert "characters left out" in await call(session, "read_file", sandbox_id=first, path="big.txt")
        assert "limit of 400" in await error(session, "read_file", sandbox_id=first, path="big.txt", encoding="base64")
        await call(session, "kill_sandbox", sandbox_id=first)
        second = await create(session)
        marker = await start_marker(session, second)
    assert_gone(marker)


def _start_http(log: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """``corral mcp --transport http`` on a free loopback port, its stderr into ``log``; (process, endpoint URL)."""
    port = free_port()
    with open(log, "wb") as stderr:
        process = subprocess.Popen(_command("--transport", "http", "--port", str(port), *options),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"corral mcp exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            return process, f"http://127.0.0.1:{port}/mcp"
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError("corral mcp did not listen within 30 s")


async def test_streamable_http_every_tool_and_sigterm_kills_the_sandboxes(tmp_path: Path):
    log = tmp_path / "mcp.log"
    process, url = _start_http(log)
    try:
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            left = await exercise(session)
            marker = await start_marker(session, left)
        # the sandbox outlives a client's session: it belongs to the MCP server
        assert host_processes_with(marker)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, log.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_gone(marker)


def test_http_listens_on_loopback_only():
    done = subprocess.run(_command("--transport", "http", "--host", "0.0.0.0"), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "loopback only" in done.stderr
    done = subprocess.run(_command("--transport", "sse"), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "stdio or http" in done.stderr


async def test_against_a_real_corral_server_and_sandboxes_are_killed_on_exit(tmp_path: Path):
    server = ServerProcess(tmp_path / "server", "--max-sandboxes-per-key", "4").start()
    env = {"CORRAL_API_KEY": server.key}
    try:
        async with stdio_session("--server", server.url, env=env) as session:
            left = await exercise(session)
            marker = await start_marker(session, left)
            mine = Sandbox.list(server=server.url, api_key=server.key, metadata={"created_by": "corral-mcp"})
            assert {info.id: info.state.value for info in mine}[left] == "running"
        assert_gone(marker)  # the client closed stdin: the MCP server killed its sandboxes on the server
        assert {info.state.value for info in Sandbox.list(server=server.url, api_key=server.key)} == {"stopped"}

        pid_file = tmp_path / "mcp.pid"
        async with stdio_session("--server", server.url, env=env, pid_file=pid_file) as session:
            marker = await start_marker(session, await create(session))
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)  # with stdin still open
            deadline = time.monotonic() + 20
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not Path(f"/proc/{pid}").exists(), "SIGTERM did not stop corral mcp"
        assert_gone(marker)
        assert {info.state.value for info in Sandbox.list(server=server.url, api_key=server.key)} == {"stopped"}
    finally:
        server.stop()


def test_a_server_needs_an_api_key():
    env = {name: value for name, value in os.environ.items() if name != "CORRAL_API_KEY"}
    done = subprocess.run(_command("--server", "http://127.0.0.1:9"), capture_output=True, text=True, timeout=60,
                          env=env, check=False)
    assert done.returncode == 2 and "CORRAL_API_KEY" in done.stderr


async def test_an_expired_sandbox_is_an_error_and_frees_its_place_under_the_cap():
    async with stdio_session("--max-sandboxes", "1", "--sandbox-ttl", "1") as session:
        first = await create(session)
        await asyncio.sleep(3)  # the hosted service's reaper kills it once its time to live passed
        assert "SandboxClosedError" in await error(session, "run_code", sandbox_id=first, code="print(1)")
        second = await create(session)  # the cap counts only sandboxes still alive
        assert second != first and first not in await call(session, "list_sandboxes")
