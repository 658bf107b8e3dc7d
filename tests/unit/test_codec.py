"""The two codecs of one protocol: the host's (pydantic's JSON) and the agent's (stdlib), byte-compatible.

Every request the host encodes is the line the agent's encoder would write, and the agent
decodes it to the same data; every event the agent encodes, the host decodes to the same
model as before. Both refuse NaN and Infinity, however they are spelled.
"""

from __future__ import annotations

import base64
import math
from typing import get_args

import pytest
from pydantic import ValidationError

from corral.protocol import messages, parse_event, wire
from corral.protocol.messages import encode_request

#: Binary payloads: every byte value, so base64's whole alphabet (and its padding) is on the wire.
BINARY = base64.b64encode(bytes(range(256)) * 3 + b"\x00").decode()
#: Text that needs escaping in JSON, and text that does not (non-ASCII, DEL, U+2028).
AWKWARD = 'quote " backslash \\ controls \x00\x01\x1f\n\r\t\b\f del \x7f é ☃ 😀 \u2028 end'
#: A file name that is not UTF-8, as Python decodes it (surrogateescape): only the stdlib codec writes it.
NOT_UTF8 = "/home/user/caf\udce9"

REQUESTS = {
    messages.ExecRequest: dict(language="python", code=AWKWARD, session=True, timeout_ms=1500,
                               env={"NAME": AWKWARD, "EMPTY": ""}, cwd="/home/user/é", stdin_b64=BINARY,
                               stdout_limit=0, stderr_limit=2**40, isolated=True,
                               files=[messages.RunFile(path="a/b.bin", data_b64=BINARY, mode=0o755)]),
    messages.FileWriteRequest: dict(path=NOT_UTF8, data_b64=BINARY, mode=0o4755),
    messages.FileReadRequest: dict(path=NOT_UTF8),
    messages.FileListRequest: dict(path="/home/user/☃"),
    messages.FileRemoveRequest: dict(path="x", recursive=True),
    messages.CancelRequest: dict(target=2**63),
    messages.PingRequest: dict(),
    messages.ResetRequest: dict(),
    messages.ConfigureRequest: dict(env={"A": "b"}, prefork="javascript", entropy_b64=BINARY,
                                    rlimits={"RLIMIT_NPROC": 64}, memory_bytes=2**31, pids=100,
                                    user_seccomp_b64=BINARY),
    messages.ReseedRequest: dict(entropy_b64=BINARY),
    messages.EgressRequest: dict(enable=True, port=65535),
    messages.PortConnectRequest: dict(port=8080, token="t" * 32),
    messages.PtyOpenRequest: dict(cols=80, rows=24, command=AWKWARD, env={"TERM": "xterm"}, cwd=None),
    messages.PtyInputRequest: dict(target=3, data_b64=BINARY),
    messages.PtyResizeRequest: dict(target=3, cols=1000, rows=1),
    messages.FileStatRequest: dict(path=AWKWARD),
    messages.FileMkdirRequest: dict(path="/home/user/new", parents=True),
    messages.FileRenameRequest: dict(source=NOT_UTF8, destination="/home/user/b"),
    messages.WatchStartRequest: dict(path="/home/user", recursive=True),
    messages.ProcessStartRequest: dict(cmd=AWKWARD, cwd="/tmp", env={"X": "1"}, stdin=True, tag="☃", timeout_ms=5),
    messages.ProcessAttachRequest: dict(pid=42, replay=True),
    messages.ProcessInputRequest: dict(pid=42, data_b64=BINARY),
    messages.ProcessCloseStdinRequest: dict(pid=42),
    messages.ProcessSignalRequest: dict(pid=42, signal=15),
    messages.ProcessListRequest: dict(),
}

ENTRY = {"name": "caf\udce9", "path": "/home/user/caf\udce9", "kind": "file", "size": 2**40, "mode": 0o100644,
         "mtime": 1767225600.123456, "uid": 1000, "gid": 1000, "symlink_target": None}
#: Frames as the agent builds them (plain data), one per event type.
EVENTS = [
    {"type": "hello", "version": wire.PROTOCOL_VERSION, "pid": 1, "python": "3.11.2", "landlock_abi": 3},
    {"type": "output", "id": 1, "stream": "stdout", "data": AWKWARD},
    {"type": "output", "id": 1, "stream": "stderr", "data": "bad byte \udcff kept"},
    {"type": "result", "id": 1, "is_main_result": True,
     "data": {"text/plain": "1e-07", "application/json": {"n": [1, -0.0, 1e-7, 1.7976931348623157e308, 2**70, None,
                                                                  True, AWKWARD, [[[[]]]]]}, "image/png": BINARY}},
    {"type": "run_error", "id": 1, "name": "ValueError", "value": AWKWARD, "traceback": "line 1\nline 2"},
    {"type": "exec_done", "id": 1, "exit_code": -9, "signal": 9, "timed_out": True, "cancelled": False,
     "stdout_truncated": True, "stderr_truncated": False, "session_reset": True, "spawn_ms": 0.123456789,
     "process_ms": 12345.5, "oom_killed": True, "cpu_ms": 5e-324, "memory_peak_mb": 12.0},
    {"type": "process_started", "id": 2, "pid": 77, "log_path": "/tmp/.corral/77.log"},
    {"type": "process_list", "id": 3, "processes": [{"pid": 77, "cmd": AWKWARD, "cwd": "/home/user",
                                                       "env": {"A": "b"}, "tag": None, "stdin": True}]},
    {"type": "file_stat", "id": 4, "entry": ENTRY},
    {"type": "watch_started", "id": 5},
    {"type": "fs_event", "id": 5, "kind": "overflow", "name": "caf\udce9/é", "is_dir": True},
    {"type": "file_data", "id": 6, "data_b64": BINARY},
    {"type": "dir_listing", "id": 7, "entries": [{k: ENTRY[k] for k in ("name", "kind", "size", "mode", "mtime")},
                                                  {"name": "☃", "kind": "dir", "size": 0, "mode": 0o40755,
                                                   "mtime": 0}]},
    {"type": "ack", "id": 8, "size": 2**53 + 1},
    {"type": "error", "id": None, "code": "too_large", "message": AWKWARD},
]


def _sample(model: type, request_id: int = 9):
    return model(id=request_id, **REQUESTS[model])


def test_every_request_type_has_a_sample():
    assert set(REQUESTS) == set(get_args(get_args(messages.Request)[0]))


def test_every_event_type_has_a_sample():
    assert {frame["type"] for frame in EVENTS} == set(messages.EVENT_MODELS)


@pytest.mark.parametrize("model", list(REQUESTS), ids=lambda model: model.__name__)
def test_host_encodes_the_bytes_the_agent_codec_writes_and_reads(model):
    request = _sample(model)
    line = encode_request(request)
    plain = request.model_dump(mode="json")
    assert line == wire.encode_frame(plain)  # byte for byte
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert wire.decode_frame(line) == plain  # what the agent sees
    if model is messages.FileWriteRequest:  # the lone surrogate survives the trip (it names the right file)
        assert wire.decode_frame(line)["path"] == NOT_UTF8


@pytest.mark.parametrize("frame", EVENTS, ids=lambda frame: frame["type"])
def test_host_decodes_what_the_agent_encodes(frame):
    line = wire.encode_frame(frame)
    event = parse_event(line)
    assert type(event) is messages.EVENT_MODELS[frame["type"]]
    assert event == messages.EVENT_MODELS[frame["type"]].model_validate(wire.decode_frame(line))
    assert messages.decode_frame(line) == frame
    dumped = event.model_dump(mode="json")
    for key, value in frame.items():
        assert dumped[key] == value, key


def test_host_decodes_a_surrogate_escape_and_deep_nesting_like_the_agent():
    # a hostile or odd agent may escape surrogates, and nest deeper than pydantic's parser goes
    escaped = b'{"type":"output","id":1,"stream":"stdout","data":"\\udcff\\ud83d\\ude00"}'
    assert parse_event(escaped).data == "\udcff\U0001f600"
    deep = b'{"type":"result","id":1,"data":{"application/json":' + b"[" * 500 + b"]" * 500 + b"}}"
    assert messages.decode_frame(deep) == wire.decode_frame(deep)
    parse_event(deep)


NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1.5e999"]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(
    "template",
    [
        b'{"type":"exec_done","id":1,"exit_code":0,"spawn_ms":%s}',
        b'{"type":"exec_done","id":1,"exit_code":0,"cpu_ms":%s}',
        b'{"type":"file_stat","id":1,"entry":{"name":"a","path":"/a","kind":"file","size":1,"mode":1,'
        b'"mtime":%s,"uid":0,"gid":0}}',
        b'{"type":"result","id":1,"data":{"application/json":{"a":[1,{"b":%s}]}}}',
        b'{"type":"ack","id":1,"size":%s}',
    ],
)
def test_both_codecs_refuse_nan_and_infinity_from_the_agent(template, number):
    line = template % number
    with pytest.raises(ValueError):
        parse_event(line)  # the host
    with pytest.raises(ValueError):
        wire.decode_frame(line)  # the agent's parser


@pytest.mark.parametrize("number", NON_FINITE)
def test_the_agent_refuses_nan_and_infinity_from_the_host(number):
    with pytest.raises(ValueError):
        wire.decode_frame(b'{"type":"exec","id":1,"timeout_ms":%s}' % number)
    with pytest.raises(ValueError):
        wire.loads(f"[{number.decode()}]")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_neither_side_can_write_nan_or_infinity(value):
    with pytest.raises(ValueError):
        wire.encode_frame({"type": "exec_done", "id": 1, "exit_code": 0, "spawn_ms": value})
    with pytest.raises(ValidationError):  # no message model holds one, so the host encodes none
        messages.ExecDone(id=1, exit_code=0, spawn_ms=value)
    with pytest.raises(ValidationError):
        messages.Result(id=1, data={"application/json": [1, {"x": value}]})
    unchecked = messages.ExecDone.model_construct(id=1, exit_code=0, spawn_ms=value)  # validation bypassed
    with pytest.raises(ValueError):  # the host writes it as a token, not as null, and the agent refuses it
        wire.decode_frame(encode_request(unchecked))


def test_large_finite_numbers_still_pass():
    line = b'{"type":"exec_done","id":1,"exit_code":0,"spawn_ms":1.7976931348623157e308,"cpu_ms":1e-400}'
    event = parse_event(line)
    assert event.spawn_ms == 1.7976931348623157e308 and event.cpu_ms == 0.0
    assert wire.decode_frame(line)["spawn_ms"] == event.spawn_ms
