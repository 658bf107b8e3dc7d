"""PTY over a real WebSocket: typing, window size, Ctrl-C, exit, kill, and refusals."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from corral import AsyncSandbox
from corral.protocol import Ack, PingRequest
from corral.hosted.terminal import Terminal, TerminalExit
from serverprocess import host_processes_with

pytestmark = pytest.mark.sandbox

#: Generous bound for the host to reap killed processes (a poll, not a timing assertion).
WAIT_S = 30.0

#: Bound on waiting for the terminal to print something (a poll deadline, not a timing assertion).
READ_S = 30.0


def _ws_url(server, sandbox_id: str, query: str = "cols=100&rows=30") -> str:
    return f"ws://127.0.0.1:{server.port}/v1/sandboxes/{sandbox_id}/pty?{query}"


def _auth(credential: str) -> dict:
    return {"Authorization": f"Bearer {credential}"}


async def _read_until(ws, needle: str) -> str:
    seen = ""
    async with asyncio.timeout(READ_S):
        while needle not in seen:
            message = json.loads(await ws.recv())
            assert message["type"] == "output", message
            seen += message["data"]
    return seen


async def _send(ws, **message) -> None:
    await ws.send(json.dumps(message))


@pytest.fixture
def sandbox(api: httpx.Client):
    created = api.post("/sandboxes", json={}).json()
    yield created
    api.delete(f"/sandboxes/{created['id']}")


async def test_typing_resize_ctrl_c_and_exit(server, sandbox):
    async with connect(_ws_url(server, sandbox["id"]), additional_headers=_auth(sandbox["access_token"])) as ws:
        await _send(ws, type="input", data="tty; stty size; echo ready-$((40+2))\n")
        seen = await _read_until(ws, "ready-42")
        assert "/dev/pts/" in seen and "30 100" in seen
        await _send(ws, type="resize", cols=132, rows=50)
        await _send(ws, type="input", data="stty size; echo sized-$((1+1))\n")
        assert "50 132" in await _read_until(ws, "sized-2")
        marker = f"corral-pty-{uuid.uuid4().hex}"
        await _send(ws, type="input", data=f"bash -c 'exec -a {marker} sleep 1000'\n")
        deadline = time.monotonic() + WAIT_S
        while not host_processes_with(marker) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await _send(ws, type="input", data="\x03")  # Ctrl-C through the terminal ends the foreground job
        await _send(ws, type="input", data="echo after-$?\n")
        await _read_until(ws, "after-130")
        assert not host_processes_with(marker)
        await _send(ws, type="bogus")
        async with asyncio.timeout(READ_S):
            while (error := json.loads(await ws.recv()))["type"] == "output":
                pass  # the rest of the prompt
        assert error["type"] == "error" and "input" in error["error"]["message"]
        await _send(ws, type="input", data="exit 7\n")
        messages = [json.loads(message) async for message in ws]
        assert messages[-1] == {"type": "exit", "exit_code": 7, "signal": None}


async def test_command_and_kill(server, sandbox):
    marker = f"corral-pty-{uuid.uuid4().hex}"
    url = _ws_url(server, sandbox["id"], f"cols=80&rows=24&command=exec+-a+{marker}+sleep+1000")
    async with connect(url, additional_headers=_auth(sandbox["access_token"])) as ws:
        deadline = time.monotonic() + WAIT_S
        while not host_processes_with(marker) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert host_processes_with(marker)
        await _send(ws, type="kill")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), READ_S)
    deadline = time.monotonic() + WAIT_S
    while host_processes_with(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not host_processes_with(marker)


async def _refusal(url: str, headers: dict) -> int:
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), READ_S)
    return closed.value.rcvd.code


async def test_refusals_close_with_the_http_status(server, api, sandbox):
    sandbox_id = sandbox["id"]
    other = api.post("/sandboxes", json={}).json()
    try:
        assert await _refusal(_ws_url(server, sandbox_id), {}) == 4401
        assert await _refusal(_ws_url(server, sandbox_id), _auth("st_x_y")) == 4401
        assert await _refusal(_ws_url(server, sandbox_id), _auth(other["access_token"])) == 4403
        assert await _refusal(_ws_url(server, "sbx_nope"), _auth(server.key)) == 4404
        assert await _refusal(_ws_url(server, sandbox_id, "cols=0&rows=24"), _auth(server.key)) == 4422
        api.post(f"/sandboxes/{other['id']}/pause")
        assert await _refusal(_ws_url(server, other["id"]), _auth(server.key)) == 4409
    finally:
        api.delete(f"/sandboxes/{other['id']}")


async def test_terminal_runs_as_the_same_user_as_commands(server, api, sandbox):
    expected = api.post(f"/sandboxes/{sandbox['id']}/commands", json={"cmd": "echo uid-$(id -u)-$(id -g)"}).json()
    async with connect(_ws_url(server, sandbox["id"]), additional_headers=_auth(server.key)) as ws:
        await _send(ws, type="input", data="echo uid-$(id -u)-$(id -g)-end$((5+5))\n")
        seen = await _read_until(ws, "-end10")
    assert expected["stdout"].strip() + "-end10" in seen


HOSTILE_PTY_FRAMES = [
    b'{"type": "pty_open", "id": 900001, "cols": 0, "rows": 24}',
    b'{"type": "pty_open", "id": 900002, "cols": true, "rows": 24}',
    b'{"type": "pty_open", "id": 900003, "cols": 80, "rows": 24, "command": 7}',
    b'{"type": "pty_open", "id": 900004, "cols": 80, "rows": 24, "env": {"LD_PRELOAD": "x"}}',
    b'{"type": "pty_open", "id": 900005, "cols": 80, "rows": 24, "cwd": "a\\u0000b"}',
    b'{"type": "pty_input", "id": 900006, "target": 424242, "data_b64": "eA=="}',
    b'{"type": "pty_input", "id": 900007, "target": "x", "data_b64": "eA=="}',
    b'{"type": "pty_resize", "id": 900008, "target": 424242, "cols": 10, "rows": 10}',
]


async def test_hostile_terminal_frames_get_errors_and_terminals_still_work():
    async with AsyncSandbox() as sandbox:
        writer = sandbox._lease.instance.writer
        for frame in HOSTILE_PTY_FRAMES:
            writer.write(frame + b"\n")
        await writer.drain()
        ping = await asyncio.wait_for(sandbox._lease.channel.call(lambda i: PingRequest(id=i)), READ_S)
        assert isinstance(ping, Ack)
        console = Terminal(sandbox)
        seen = []
        async with asyncio.timeout(READ_S):
            async for item in console.output(40, 10, "stty size; exit 3"):
                seen.append(item)
        assert "10 40" in "".join(item for item in seen if isinstance(item, str))
        assert seen[-1] == TerminalExit(3, None)
