"""User-facing options are validated before anything runs."""

from __future__ import annotations

import pytest

import corral
from corral.errors import InvalidInputError
from corral.execution import check_run
from corral.protocol import wire
from corral.sandbox import make_spec


def test_defaults_match_the_documented_limits():
    spec = make_spec("python", "auto", None)
    assert spec.limits.timeout == 30 and spec.limits.memory_mb == 256 and spec.limits.writable_mb == 74
    assert spec.limits.stdout_limit == 1024 * 1024 and spec.limits.stderr_limit == 100 * 1024


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"language": "cobol"}, "language"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"memory_mb": 1}, "memory_mb"),
        ({"memory_mb": 63}, "memory_mb"),
        ({"pids": 0}, "pids"),
        ({"env": {"LD_PRELOAD": "x"}}, "LD_PRELOAD"),
        ({"env": {"A-B": "x"}}, "A-B"),
    ],
)
def test_bad_sandbox_options_name_the_problem(options, fragment):
    language = options.pop("language", "python")
    env = options.pop("env", None)
    with pytest.raises(InvalidInputError, match=fragment):
        make_spec(language, "auto", env, **options)


def test_writable_space_always_leaves_the_agent_memory():
    default = make_spec("python", "auto", None).limits
    assert default.tmpfs_total_mb <= default.memory_mb - 32
    for memory in (64, 100, 256, 4096):
        limits = make_spec("python", "auto", None, memory_mb=memory).limits
        assert 1 <= limits.tmpfs_total_mb <= memory - 32
    with pytest.raises(InvalidInputError, match="disk_mb=512 needs"):
        make_spec("python", "auto", None, memory_mb=256, disk_mb=512)
    assert make_spec("python", "auto", None, memory_mb=2048, disk_mb=512).limits.writable_mb == 512


def test_bad_run_input_is_refused():
    with pytest.raises(InvalidInputError, match="bytes"):
        check_run("x" * (wire.MAX_CODE_BYTES + 1), 1, None, None)
    with pytest.raises(InvalidInputError, match="timeout"):
        check_run("pass", -5, None, None)
    with pytest.raises(InvalidInputError, match="string"):
        check_run(b"pass", 1, None, None)
    with pytest.raises(InvalidInputError, match="PYTHONPATH"):
        check_run("pass", 1, None, {"PYTHONPATH": "/x"})


def test_invalid_input_is_also_a_value_error():
    assert issubclass(corral.InvalidInputError, ValueError)
    assert issubclass(corral.SandboxStartError, corral.TransientError)
    assert issubclass(corral.SandboxCrashedError, corral.OutcomeUnknownError)
    assert issubclass(corral.IsolationUnavailableError, corral.PermanentError)
    assert issubclass(corral.errors.ProtocolError, corral.PermanentError)
    for name in corral.errors.__all__:
        assert issubclass(getattr(corral.errors, name), corral.CorralError)


def test_public_names_exist():
    for name in corral.__all__:
        assert hasattr(corral, name), name


def test_result_ok_property():
    assert corral.ExecutionResult(exit_code=0).ok
    assert not corral.ExecutionResult(exit_code=0, timed_out=True).ok
    assert not corral.ExecutionResult(exit_code=3).ok
