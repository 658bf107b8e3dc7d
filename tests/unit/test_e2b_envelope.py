"""Connect envelope framing of the E2B layer: round trips, split reads, and refusal of bad frames (with a fuzz test)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.server.e2b.envelope import END_STREAM, EnvelopeError, EnvelopeReader, encode

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=4), max_leaves=20)
messages = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def frame(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def test_encode_is_flag_length_json():
    assert encode({"a": 1}) == b"\x00\x00\x00\x00\x07" + b'{"a":1}'
    assert encode({}, end=True) == b"\x02\x00\x00\x00\x02{}"


@given(st.lists(messages, max_size=5), st.integers(min_value=1, max_value=64))
def test_messages_survive_any_split(items, step):
    body = b"".join(encode(item) for item in items) + encode({}, end=True)
    reader, found = EnvelopeReader(), []
    for start in range(0, len(body), step):
        found += reader.feed(body[start:start + step])
    reader.finish()
    assert [envelope.message for envelope in found] == [*items, {}]
    assert [envelope.end for envelope in found] == [False] * len(items) + [True]


def test_oversized_frame_is_refused_from_its_header():
    reader = EnvelopeReader(max_payload=100)
    with pytest.raises(EnvelopeError, match="over the limit"):
        reader.feed(struct.pack(">BI", 0, 101))  # refused before the payload is sent or buffered


@pytest.mark.parametrize("body, problem", [
    (frame(0x01, b"{}"), "compressed"),
    (frame(0x04, b"{}"), "unknown envelope flags"),
    (frame(0x00, b"[1, 2]"), "not a JSON object"),
    (frame(0x00, b"{nope"), "not JSON"),
    (frame(0x00, b"\xff\xfe"), "not JSON"),
])
def test_malformed_frames_are_refused(body, problem):
    with pytest.raises(EnvelopeError, match=problem):
        EnvelopeReader().feed(body)


def test_a_body_cut_inside_a_frame_is_refused():
    reader = EnvelopeReader()
    assert reader.feed(encode({"a": 1})[:-2]) == []
    with pytest.raises(EnvelopeError, match="ended inside"):
        reader.finish()


def test_an_empty_payload_is_the_empty_message():
    assert EnvelopeReader().feed(frame(END_STREAM, b""))[0].message == {}


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=17))
def test_any_bytes_give_envelopes_or_envelope_error(data, step):
    reader = EnvelopeReader(max_payload=64)
    try:
        for start in range(0, len(data), step):
            for envelope in reader.feed(data[start:start + step]):
                assert isinstance(envelope.message, dict)
        reader.finish()
    except EnvelopeError:
        pass
    assert reader.pending <= 5 + 64
