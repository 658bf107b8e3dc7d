"""The wire module: input rules and the JSON codec both ends share."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.protocol import wire

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_dumps_matches_stdlib_json(value):
    assert json.loads(wire.dumps(value)) == value
    assert wire.loads(json.dumps(value)) == value


@pytest.mark.parametrize("text", ["", "{", "[1,]", "NaN", "{} x", '{"a": Infinity}'])
def test_loads_rejects_invalid_documents(text):
    with pytest.raises(ValueError):
        wire.loads(text)


def test_dumps_rejects_nan_and_unknown_types():
    with pytest.raises(ValueError):
        wire.dumps(float("nan"))
    with pytest.raises(TypeError):
        wire.dumps({"a": object()})


def test_frames_roundtrip_and_require_a_type():
    frame = wire.encode_frame({"type": "ping", "id": 1, "text": "é\n\x00"})
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert wire.decode_frame(frame)["text"] == "é\n\x00"
    with pytest.raises(ValueError):
        wire.decode_frame(b"[1, 2]")
    with pytest.raises(ValueError):
        wire.decode_frame(b'{"id": 1}')


@pytest.mark.parametrize(
    "name",
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "NODE_OPTIONS", "BASH_ENV",
     "ENV", "PATH", "IFS", "GCONV_PATH", "BASH_FUNC_x%%"],
)
def test_blocked_environment_names(name):
    assert wire.env_problem(name, "x") is not None


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "Ä", "A=B"])
def test_malformed_environment_names(name):
    assert "form" in wire.env_problem(name, "x")


def test_environment_values_and_counts():
    assert wire.env_problem("NAME", "value\twith tab") is None
    assert "control character" in wire.env_problem("NAME", "a\nb")
    assert "longer" in wire.env_problem("NAME", "x" * (wire.MAX_ENV_VALUE_BYTES + 1))
    too_many = {f"V{i}": "1" for i in range(wire.MAX_ENV_VARS + 1)}
    assert "at most" in wire.env_problems(too_many)
    assert wire.env_problems({"A": "1", "_B2": ""}) is None


def test_path_rules():
    assert wire.path_problem("data/in.txt") is None
    assert wire.path_problem("") is not None
    assert wire.path_problem("a\x00b") is not None
    assert wire.path_problem("a" * (wire.MAX_PATH_BYTES + 1)) is not None
