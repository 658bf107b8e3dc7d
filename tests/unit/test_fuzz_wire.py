"""Fuzzing the protocol's frame decoder: any bytes give a message or the documented ValueError.

The host decodes every line its agent writes (``parse_event``, pydantic's JSON), and the agent every
line the host writes (``wire.decode_frame``, the stdlib's); the agent is untrusted. A crash is any
other exception, or a hang. The two parsers agree: what the agent's reads, the host's reads the same.
A longer run of the same parsers: ``scripts/fuzz.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.protocol import messages, parse_event, wire

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENT_TYPES = ["hello", "output", "exec_done", "started", "file_data", "dir_listing", "ack", "error", "exec", "x"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
typed_frames = st.fixed_dictionaries({"type": st.sampled_from(EVENT_TYPES)},
                                     optional={"id": st.integers() | st.none() | st.text(), "stream": st.text(),
                                               "data": st.text(), "exit_code": st.integers(), "code": st.text(),
                                               "message": st.text(), "entries": json_values})
frames = typed_frames | st.dictionaries(st.text(max_size=10), json_values, max_size=6)
#: Text with lone surrogates too (names that are not UTF-8 reach the host in surrogateescape form).
any_text = st.text(st.characters(codec=None, exclude_categories=())
                   | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=12)
surrogate_frames = st.fixed_dictionaries({"type": st.sampled_from(EVENT_TYPES)},
                                         optional={"id": st.integers(), "data": any_text, "name": any_text,
                                                   "entries": st.lists(st.dictionaries(any_text, any_text, max_size=3),
                                                                       max_size=3)})


def decodes_or_refuses(line: bytes) -> None:
    try:
        message = wire.decode_frame(line)
    except ValueError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


def parses_or_refuses(line: bytes) -> None:
    try:
        parse_event(line)
    except ValueError:  # pydantic's ValidationError is one
        pass


def host_agrees_with_agent(line: bytes) -> None:
    """The host's parser reads a line as the agent's does; what the agent's refuses, the host refuses."""
    try:
        expected = wire.decode_frame(line)
    except ValueError:
        with pytest.raises(ValueError):
            parse_event(line)
        return
    assert messages.decode_frame(line) == expected


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes(line):
    decodes_or_refuses(line)
    parses_or_refuses(line)
    host_agrees_with_agent(line)


@FUZZ
@given(frames, st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=4)), max_size=4))
def test_damaged_frames(message, damage):
    line = bytearray(wire.encode_frame(message))
    for position, junk in damage:
        position %= len(line) + 1
        line[position:position + len(junk)] = junk
    decodes_or_refuses(bytes(line))
    parses_or_refuses(bytes(line))
    host_agrees_with_agent(bytes(line))


@FUZZ
@given(typed_frames)
def test_every_frame_round_trips(message):
    assert wire.decode_frame(wire.encode_frame(message)) == message


@FUZZ
@given(typed_frames | surrogate_frames)
def test_the_host_reads_every_frame_the_agent_writes(message):
    line = wire.encode_frame(message)
    assert messages.decode_frame(line) == message
    host_agrees_with_agent(line)


@pytest.mark.parametrize("depth", [100, 10_000, 1_000_000])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_nesting_is_refused_not_a_recursion_error(depth, opener):
    decodes_or_refuses(b'{"type":"ack","id":1,"x":' + opener * depth + b"\n")
    parses_or_refuses(opener * depth)


def test_malformed_json_is_a_value_error_without_json_imported():
    """The agent never imports ``json``; CPython's scanner then fails with SystemError (found by scripts/fuzz.py)."""
    wire_path = Path(wire.__file__)
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('wire', {str(wire_path)!r})\n"
        "wire = importlib.util.module_from_spec(spec); spec.loader.exec_module(wire)\n"
        "assert 'json.decoder' not in sys.modules\n"
        "for text in ['{\"a\" 1}', '{\"a\":1,}', '\"abc', '[1 2]', '[' * 100000]:\n"
        "    try:\n"
        "        wire.loads(text)\n"
        "    except ValueError:\n"
        "        continue\n"
        "    raise SystemExit('parsed ' + text)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout == "ok\n", done.stderr[-2000:]
