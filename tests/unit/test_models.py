"""User-facing options are validated before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

import corral
from corral.errors import InvalidInputError
from corral.execution import check_run
from corral.models import (DisplayResult, ExecutionError, ExecutionResult, FileEntry, FileEvent, FileInfo, Limits,
                           OutputEvent, ProcessInfo, SandboxSpec, TimingBreakdown, validated)
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


def test_every_public_name_resolves_to_its_definition():
    # run in a fresh interpreter: the lazy names (PEP 562) must resolve from a bare `import corral`
    code = (
        "import importlib, corral\n"
        "for name in corral.__all__:\n"
        "    value = getattr(corral, name)\n"
        "    home = corral._LAZY.get(name)\n"
        "    assert home is None or getattr(importlib.import_module(home), name) is value, name\n"
        "    assert name in dir(corral), name\n"
        "namespace = {}\n"
        "exec('from corral import *', namespace)\n"
        "assert set(corral.__all__) <= set(namespace), set(corral.__all__) - set(namespace)\n"
        "assert set(corral._LAZY) <= set(corral.__all__), set(corral._LAZY) - set(corral.__all__)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        corral.Nonexistent  # noqa: B018


def _modules_loaded_by(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    """Modules under ``prefixes`` that ``statement`` loads in a fresh interpreter."""
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in json.loads(done.stdout) if name.startswith(prefixes) or f"{name}." in prefixes]


FRONT_ENDS = ("rich.", "httpx.", "fastapi.", "uvicorn.", "starlette.", "mcp.", "mcp_types.", "corral.server.",
              "corral.client.", "corral.mcp.")


def test_import_corral_stays_light():
    # `import corral` must not pay for pydantic, asyncio or any front-end: they load on first use
    heavy = ("pydantic.", "pydantic_core.", "asyncio.", "typer.", "click.", "corral.models.", "corral.sandbox.",
             "corral.cli.", "corral.backends.", *FRONT_ENDS)
    assert _modules_loaded_by("import corral", heavy) == []


def test_corral_run_loads_no_front_end_it_does_not_use():
    assert _modules_loaded_by("import corral.cli.run", FRONT_ENDS) == []


def test_result_ok_property():
    assert corral.ExecutionResult(exit_code=0).ok
    assert not corral.ExecutionResult(exit_code=0, timed_out=True).ok
    assert not corral.ExecutionResult(exit_code=3).ok


# --- the models' own validation: bounds, refusals, defaults ------------------------------------------

LIMIT_BOUNDS = [  # field, smallest accepted, largest accepted, just below, just above
    ("timeout", 0.001, 86400, 0, 86400.001),
    ("memory_mb", 64, 1024 * 1024, 63, 1024 * 1024 + 1),
    ("pids", 16, 1 << 22, 15, (1 << 22) + 1),
    ("cpus", 0.01, 1024, 0, 1024.5),
    ("disk_mb", 1, 10, 0, None),
    ("stdout_limit", 0, 256 * 1024 * 1024, -1, 256 * 1024 * 1024 + 1),
    ("stderr_limit", 0, 256 * 1024 * 1024, -1, 256 * 1024 * 1024 + 1),
]


@pytest.mark.parametrize(("name", "low", "high", "below", "above"), LIMIT_BOUNDS, ids=[b[0] for b in LIMIT_BOUNDS])
def test_limits_accept_their_bounds_and_refuse_one_step_beyond(name, low, high, below, above):
    assert getattr(Limits(**{name: low}), name) == low
    assert getattr(Limits(**{name: high}), name) == high
    for value in (below, above):
        if value is None:
            continue
        with pytest.raises(InvalidInputError, match=f"^{name}: Input should be"):
            validated(Limits, **{name: value})


def test_limits_defaults_and_what_they_derive():
    limits = Limits()
    assert limits.model_dump() == {"timeout": 30.0, "memory_mb": 256, "pids": 256, "cpus": 1.0, "disk_mb": None,
                                   "stdout_limit": 1024 * 1024, "stderr_limit": 100 * 1024}
    assert (limits.writable_mb, limits.shm_mb, limits.tmpfs_total_mb) == (74, 64, 212)
    small = Limits(memory_mb=64)
    assert (small.writable_mb, small.shm_mb, small.tmpfs_total_mb) == (10, 10, 30)
    assert Limits(memory_mb=8192).writable_mb == 1024  # capped at 1 GiB each
    assert Limits(cpus=None).cpus is None  # no CPU cap


@pytest.mark.parametrize(("fields", "message"), [
    ({"memory_mb": "lots"}, "memory_mb: Input should be a valid integer"),
    ({"pids": 1.5}, "pids: Input should be a valid integer"),
    ({"swap_mb": 1}, "swap_mb: Extra inputs are not permitted"),
    ({"memory_mb": 128, "disk_mb": 64}, "disk_mb=64 needs 192 MB"),
])
def test_limits_refuse_wrong_types_unknown_fields_and_disks_larger_than_memory(fields, message):
    with pytest.raises(InvalidInputError, match=message):
        validated(Limits, **fields)


def test_models_are_frozen_and_compare_by_value():
    limits = Limits()
    with pytest.raises(ValidationError, match="frozen"):
        limits.memory_mb = 1024
    first = make_spec("python", "auto", {"B": "2", "A": "1"}, memory_mb=512)
    second = make_spec("python", "auto", {"A": "1", "B": "2"}, memory_mb=512)
    assert first == second and hash(first) == hash(second)  # equal specs share a warm pool
    assert first != make_spec("python", "auto", {"A": "1"}, memory_mb=512)


def test_sandbox_spec_keeps_its_environment_sorted_and_checked():
    spec = SandboxSpec(env={"Z": "last", "A": "first"})
    assert spec.env == (("A", "first"), ("Z", "last")) and spec.env_dict == {"A": "first", "Z": "last"}
    assert SandboxSpec(env=None).env == () and SandboxSpec().language == "python"
    assert SandboxSpec().isolation == "auto" and SandboxSpec().limits == Limits()
    with pytest.raises(InvalidInputError, match="env: Value error, .*BASH_ENV"):
        validated(SandboxSpec, env={"BASH_ENV": "/x"})
    with pytest.raises(InvalidInputError, match="language: Input should be 'python', 'javascript', 'shell' or 'cpp'"):
        validated(SandboxSpec, language="cobol")
    with pytest.raises(InvalidInputError, match=r"limits\.timeout: Input should be greater than 0"):
        validated(SandboxSpec, limits={"timeout": 0})


def test_execution_result_needs_an_exit_code_and_defaults_everything_else():
    with pytest.raises(ValidationError, match="exit_code"):
        ExecutionResult()
    result = ExecutionResult(exit_code=0)
    assert (result.stdout, result.stderr, result.signal, result.error, result.results) == ("", "", None, None, [])
    assert not (result.timed_out or result.cancelled or result.oom_killed or result.warm_pool_hit)
    assert result.timing == TimingBreakdown() and result.timing.total_ms == 0.0
    assert result.text is None
    for flag in ("cancelled", "oom_killed"):
        assert not ExecutionResult(exit_code=0, **{flag: True}).ok


def test_execution_result_round_trips_through_json_with_rich_results():
    result = ExecutionResult(
        exit_code=1, stdout="out", language="javascript", isolation="microvm",
        results=[DisplayResult(data={"text/plain": "side"}), DisplayResult(data={"text/plain": "42"},
                                                                           is_main_result=True)],
        error=ExecutionError(name="Error", value="boom", traceback="at <anonymous>"),
        timing=TimingBreakdown(setup_ms=1.5, total_ms=9.25),
    )
    again = ExecutionResult.model_validate_json(result.model_dump_json())
    assert again == result
    assert again.text == "42" and again.results[0].formats == ["text/plain"]
    assert again.error.value == "boom" and again.timing.total_ms == 9.25
    with pytest.raises(ValidationError, match="language"):
        ExecutionResult(exit_code=0, language="cobol")


@pytest.mark.parametrize(("model", "fields", "field"), [
    (OutputEvent, {"stream": "stdin", "data": ""}, "stream"),
    (FileEvent, {"kind": "delete", "name": "x"}, "kind"),
    (FileEntry, {"name": "x", "kind": "socket", "size": 0, "mode": 0, "mtime": 0}, "kind"),
    (FileInfo, {"name": "x", "path": "/x", "kind": "file", "size": "big", "mode": 0, "mtime": 0, "uid": 0, "gid": 0},
     "size"),
    (ProcessInfo, {"pid": 1, "cmd": "sh", "cwd": "/", "env": {}, "extra": 1}, "extra"),
])
def test_result_models_refuse_values_outside_their_vocabulary(model, fields, field):
    with pytest.raises(ValidationError) as caught:
        model(**fields)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def test_small_models_defaults():
    assert FileEvent(kind="overflow", name="").is_dir is False
    assert ProcessInfo(pid=3, cmd="sleep 1", cwd="/home/user", env={}).model_dump() == {
        "pid": 3, "cmd": "sleep 1", "cwd": "/home/user", "env": {}, "tag": None, "stdin": False}
    assert FileInfo(name="l", path="/l", kind="symlink", size=1, mode=0o777, mtime=0, uid=0, gid=0).symlink_target is None
    assert DisplayResult(data={}).text is None
