"""The host end of the protocol: fresh ids, events routed to their request, and what a broken stream does."""

from __future__ import annotations

import asyncio

import pytest

from corral.channel import Channel
from corral.errors import ProtocolError, SandboxClosedError, SandboxCrashedError
from corral.protocol import Ack, CancelRequest, FileData, Output, PingRequest
from scripted_agent import ScriptedInstance, exec_done


@pytest.fixture
async def agent():
    instance = await ScriptedInstance.open()
    yield instance
    instance.stop_now()


async def test_each_request_gets_a_fresh_id_and_its_terminal_event(agent):
    channel = Channel(agent)
    first = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    second = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    requests = [await agent.next_request(), await agent.next_request()]
    assert sorted(r["id"] for r in requests) == [1, 2]
    assert {r["type"] for r in requests} == {"ping"}
    await agent.send({"type": "ack", "id": 2, "size": 22}, {"type": "ack", "id": 1, "size": 11})
    assert (await first).size == 11  # each answer reaches the request with its id, whatever the order
    assert (await second).size == 22
    await channel.close()


async def test_interleaved_events_are_routed_by_id_and_unknown_ids_dropped(agent):
    channel = Channel(agent)

    async def collect():
        return [event async for event in channel.request(lambda i: PingRequest(id=i))]

    a, b = asyncio.ensure_future(collect()), asyncio.ensure_future(collect())
    ids = sorted([(await agent.next_request())["id"], (await agent.next_request())["id"]])
    await agent.send(
        {"type": "output", "id": ids[0], "stream": "stdout", "data": "a1"},
        {"type": "output", "id": 99, "stream": "stdout", "data": "nobody's"},
        {"type": "output", "id": ids[1], "stream": "stderr", "data": "b1"},
        {"type": "output", "id": ids[0], "stream": "stdout", "data": "a2"},
        exec_done(ids[1], exit_code=3),
        exec_done(ids[0]),
    )
    events_a, events_b = await a, await b
    assert [e.data for e in events_a if isinstance(e, Output)] == ["a1", "a2"]
    assert [e.data for e in events_b if isinstance(e, Output)] == ["b1"]
    assert events_a[-1].type == events_b[-1].type == "exec_done"
    assert events_b[-1].exit_code == 3
    await channel.close()


async def test_request_frame_is_the_encoded_model(agent):
    channel = Channel(agent)
    await channel.send_nowait(lambda i: CancelRequest(id=i, target=7))
    assert await agent.next_request() == {"type": "cancel", "id": 1, "target": 7}
    await channel.close()


async def test_agent_exit_fails_waiting_requests_with_its_last_words(agent):
    agent.last_words = "Traceback: agent died"
    channel = Channel(agent)
    waiting = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    await agent.next_request()
    agent.hang_up()
    with pytest.raises(SandboxCrashedError, match="agent exited.*sandbox said: Traceback: agent died"):
        await waiting
    assert channel.broken
    with pytest.raises(SandboxCrashedError):  # and every later request, without sending anything
        await channel.call(lambda i: PingRequest(id=i))
    await channel.close()


async def test_an_invalid_frame_breaks_the_channel_with_a_protocol_error_as_cause(agent):
    channel = Channel(agent)
    waiting = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    await agent.next_request()
    await agent.send_raw(b'{"type": "ack", "id": "not a number"}\n')
    with pytest.raises(SandboxCrashedError) as caught:
        await waiting
    assert isinstance(caught.value.__cause__, ProtocolError)
    assert "invalid frame" in str(caught.value.__cause__)
    assert channel.broken
    await channel.close()


async def test_an_unknown_event_type_breaks_the_channel(agent):
    channel = Channel(agent)
    waiting = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    await agent.next_request()
    await agent.send({"type": "surprise", "id": 1})
    with pytest.raises(SandboxCrashedError, match="invalid frame") as caught:
        await waiting
    assert isinstance(caught.value.__cause__, ProtocolError)
    await channel.close()


async def test_close_fails_waiters_with_closed_not_crashed_and_refuses_new_requests(agent):
    channel = Channel(agent)
    waiting = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    await agent.next_request()
    await channel.close()
    with pytest.raises(SandboxClosedError):
        await waiting
    with pytest.raises(SandboxClosedError, match="closed"):
        await channel.call(lambda i: PingRequest(id=i))
    with pytest.raises(SandboxClosedError):
        await channel.send_nowait(lambda i: PingRequest(id=i))


async def test_file_data_is_a_terminal_event(agent):
    channel = Channel(agent)
    reading = asyncio.ensure_future(channel.call(lambda i: PingRequest(id=i)))
    request = await agent.next_request()
    await agent.send({"type": "file_data", "id": request["id"], "data_b64": "aGk="})
    event = await reading
    assert isinstance(event, FileData) and event.data_b64 == "aGk="
    assert not isinstance(event, Ack)
    await channel.close()
