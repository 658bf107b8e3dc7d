"""The test plays the agent: an Instance whose byte stream is a socket pair, the far end in the test.

The host side (Channel, execute, the pool's health checks) runs unchanged over a real
asyncio stream; the test reads each request frame the host sent and writes the event
frames an agent would answer with, in the agent's own codec (``corral.protocol.wire``).
:class:`ScriptedBackend` is an isolation level whose sandboxes are such instances, each
answered by a function of the request, so a pool can start, check and recycle them.
Nothing is isolated and no process starts, so these tests run anywhere, fast.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from corral.backends.base import Backend, Instance, ProbeResult
from corral.models import ResourceUsage
from corral.models import SandboxSpec
from corral.protocol import wire


class ScriptedInstance(Instance):
    """An Instance with no sandbox behind it: ``agent_*`` is the other end of its stream."""

    setup_ms = 1.5
    boot_ms = 2.5

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 agent_reader: asyncio.StreamReader, agent_writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.agent_reader, self.agent_writer = agent_reader, agent_writer
        self.service_dir = Path("/nonexistent")
        self.is_alive = True
        self.stopped = False
        self.accounting_resets = 0
        self.usages: list[ResourceUsage | None] = []  # usage() answers these in turn, then None
        self.last_words = ""

    @classmethod
    async def open(cls) -> ScriptedInstance:
        """A connected pair: the host end for the code under test, the agent end for the test."""
        host, agent = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=host)
        agent_reader, agent_writer = await asyncio.open_unix_connection(sock=agent)
        return cls(reader, writer, agent_reader, agent_writer)

    async def next_request(self, timeout: float = 5.0) -> dict:
        """The next frame the host sent, decoded."""
        return wire.decode_frame(await asyncio.wait_for(self.agent_reader.readline(), timeout))

    async def send(self, *events: dict) -> None:
        """Write event frames as the agent would."""
        for event in events:
            self.agent_writer.write(wire.encode_frame(event))
        await self.agent_writer.drain()

    async def send_raw(self, data: bytes) -> None:
        """Write bytes that need not be a valid frame."""
        self.agent_writer.write(data)
        await self.agent_writer.drain()

    def hang_up(self) -> None:
        """The agent's end closes, as when the sandbox dies."""
        self.agent_writer.close()

    def alive(self) -> bool:
        return self.is_alive

    def usage(self) -> ResourceUsage | None:
        return self.usages.pop(0) if self.usages else None

    def reset_accounting(self) -> None:
        self.accounting_resets += 1

    async def stop(self) -> None:
        self.stop_now()

    def stop_now(self) -> None:
        self.stopped = True
        self.is_alive = False
        for writer in (self.writer, self.agent_writer):
            writer.close()

    def diagnostics(self) -> str:
        return self.last_words


def exec_done(request_id: int, **fields) -> dict:
    """An ``exec_done`` frame for ``request_id`` (exit code 0 unless given)."""
    return {"type": "exec_done", "id": request_id, "exit_code": 0, **fields}


def default_answer(request: dict) -> list[dict]:
    """What a healthy agent answers: ``ack`` to a ping, the code itself as stdout to an ``exec``."""
    if request["type"] == "exec":
        return [{"type": "output", "id": request["id"], "stream": "stdout", "data": request["code"]},
                exec_done(request["id"])]
    return [{"type": "ack", "id": request["id"]}]


class ScriptedBackend(Backend):
    """An isolation level named ``scripted`` whose sandboxes are ScriptedInstances answered by ``answer``.

    ``answer(instance, request)`` returns the frames to send back (none: the request stays unanswered).
    """

    name = "scripted"

    def __init__(self, answer: Callable[[ScriptedInstance, dict], list[dict]] | None = None):
        self.answer = answer or (lambda instance, request: default_answer(request))
        self.instances: list[ScriptedInstance] = []
        self.requests: list[dict] = []
        self._agents: set[asyncio.Task] = set()

    def probe(self) -> ProbeResult:
        return ProbeResult(True, "scripted in the test")

    def may_be_hardware_isolated(self) -> bool:
        return False

    async def start(self, spec: SandboxSpec) -> Instance:
        instance = await ScriptedInstance.open()
        self.instances.append(instance)
        task = asyncio.ensure_future(self._serve(instance))
        self._agents.add(task)
        task.add_done_callback(self._agents.discard)
        return instance

    async def _serve(self, instance: ScriptedInstance) -> None:
        while line := await instance.agent_reader.readline():
            request = wire.decode_frame(line)
            self.requests.append(request)
            try:
                await instance.send(*self.answer(instance, request))
            except ConnectionError:
                return
