"""User-facing options are validated before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys

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
