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
    assert frame == b'{"type":"ping","id":1,"text":"\xc3\xa9\\n\\u0000"}\n'
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert wire.decode_frame(frame) == {"type": "ping", "id": 1, "text": "é\n\x00"}
    with pytest.raises(ValueError, match="not a JSON object with a string 'type'"):
        wire.decode_frame(b"[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object with a string 'type'"):
        wire.decode_frame(b'{"id": 1}')
    with pytest.raises(ValueError, match="not a JSON object with a string 'type'"):
        wire.decode_frame(b'{"type": 5}')


def test_decoded_values_are_exact():
    document = '{"a": [1, -2.5e3, true, false, null, "\\u00e9\\ud83d\\ude00"], "big": 1000000000000000000000001}'
    assert wire.loads(document) == {"a": [1, -2500.0, True, False, None, "é😀"], "big": 10**24 + 1}
    assert wire.loads(" [ ] ") == [] and wire.loads('"x"') == "x"
    assert wire.loads('{"a": 1, "a": 2}') == {"a": 2}  # the last duplicate wins, as in the stdlib


def test_encoded_text_is_compact_and_exact():
    assert wire.dumps({"a": 1, "b": [True, None, 2.5, "é\n"]}) == '{"a":1,"b":[true,null,2.5,"é\\n"]}'
    assert wire.dumps(10**30) == "1" + "0" * 30
    with pytest.raises(TypeError, match="keys must be strings"):
        wire.dumps({1: 2})


def test_a_lone_surrogate_survives_a_frame_round_trip():
    # file names on Linux are bytes; the agent carries undecodable ones as lone surrogates
    frame = wire.encode_frame({"type": "x", "name": "\ud800"})
    assert b"\xed\xa0\x80" in frame
    assert wire.decode_frame(frame)["name"] == "\ud800"


def test_frames_over_the_limit_or_not_utf8_are_refused():
    with pytest.raises(ValueError, match=f"exceeds {wire.MAX_FRAME_BYTES}"):
        wire.decode_frame(b" " * (wire.MAX_FRAME_BYTES + 1))
    with pytest.raises(ValueError):
        wire.decode_frame(b'{"type": "\xff"}')


@pytest.mark.parametrize(
    "name",
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "NODE_OPTIONS", "BASH_ENV",
     "ENV", "PATH", "IFS", "GCONV_PATH", "BASH_FUNC_x", "GLIBC_TUNABLES", "LD_ANYTHING"],
)
def test_blocked_environment_names(name):
    assert wire.env_problem(name, "x") == (
        f"environment variable {name} is blocked: it can change how the loader, interpreter or shell starts")


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "Ä", "A=B", "BASH_FUNC_x%%"])
def test_malformed_environment_names(name):
    assert wire.env_problem(name, "x") == f"environment variable name {name!r} is not of the form [A-Za-z_][A-Za-z0-9_]*"


def test_environment_values_and_counts():
    assert wire.env_problem("NAME", "value\twith tab") is None
    assert wire.env_problem("NAME", "a\nb") == "environment variable NAME contains a control character"
    assert wire.env_problem("NAME", "a\x7fb") == "environment variable NAME contains a control character"
    assert wire.env_problem("NAME", "x" * wire.MAX_ENV_VALUE_BYTES) is None
    assert wire.env_problem("NAME", "x" * (wire.MAX_ENV_VALUE_BYTES + 1)) == (
        f"environment variable NAME is longer than {wire.MAX_ENV_VALUE_BYTES} bytes")
    assert wire.env_problem("NAME", "\ud800") == "environment variable NAME is not valid UTF-8 text"
    assert "longer than" in wire.env_problem("N" * (wire.MAX_ENV_NAME_BYTES + 1), "x")
    assert wire.env_problem("NAME", 1) == "environment variable names and values must be strings"
    too_many = {f"V{i}": "1" for i in range(wire.MAX_ENV_VARS + 1)}
    assert wire.env_problems(too_many) == (
        f"at most {wire.MAX_ENV_VARS} environment variables may be set, got {wire.MAX_ENV_VARS + 1}")
    assert wire.env_problems({f"V{i}": "1" for i in range(wire.MAX_ENV_VARS)}) is None
    assert wire.env_problems({"A": "1", "_B2": ""}) is None
    assert wire.env_problems({"A": "1", "LD_PRELOAD": "x"}).startswith("environment variable LD_PRELOAD is blocked")
    assert wire.env_problems([("A", "1")]) == "env must be a mapping of names to values"


def test_path_rules():
    assert wire.path_problem("data/in.txt") is None
    assert wire.path_problem("/abs/../x") is None  # resolved by the agent, inside the sandbox
    assert wire.path_problem("a" * wire.MAX_PATH_BYTES) is None
    assert wire.path_problem("") == "path must be a non-empty string"
    assert wire.path_problem(None) == "path must be a non-empty string"
    assert wire.path_problem("a\x00b") == "path contains a NUL byte"
    assert wire.path_problem("a" * (wire.MAX_PATH_BYTES + 1)) == f"path is longer than {wire.MAX_PATH_BYTES} bytes"
    assert wire.path_problem("é" * (wire.MAX_PATH_BYTES // 2 + 1)) == (  # bytes count, not characters
        f"path is longer than {wire.MAX_PATH_BYTES} bytes")


@pytest.mark.parametrize(("path", "problem"), [
    ("in.txt", None),
    ("dir/sub/in.txt", None),
    ("/etc/passwd", "'/etc/passwd' must be relative to the run's home directory"),
    ("a/../b", "'a/../b' must not contain empty, '.' or '..' components"),
    ("./a", "'./a' must not contain empty, '.' or '..' components"),
    ("a//b", "'a//b' must not contain empty, '.' or '..' components"),
    ("a/", "'a/' must not contain empty, '.' or '..' components"),
    ("", "path must be a non-empty string"),
])
def test_run_file_paths_stay_inside_the_run_home(path, problem):
    assert wire.run_file_problem(path) == problem
