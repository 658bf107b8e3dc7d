"""The command-line app: ``corral run``'s fast path without typer, and commands built alone for speed."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from corral.cli import run, run_args, run_options
from corral.cli.typer_app import COMMANDS, build_app

#: corral.cli.run.run's defaults (the tests below replace the function itself to see what it is called with).
DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(run.run).parameters.items()}
PROGRAM_PARAMETERS = inspect.signature(run.run).parameters
OTHER_MODULES = ("corral.cli.doctor", "corral.cli.image", "corral.cli.keys", "corral.cli.serve",
                 "corral.cli.template", "corral.cli.mcp", "corral.server", "corral.client", "corral.mcp", "mcp",
                 "typer", "click", "rich", "httpx", "fastapi")
#: Those of them that a command built alone by typer (which loads typer, click and rich) must not load either.
NOT_TYPER = OTHER_MODULES[:10]


def _modules_after(argv: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n"
            f"sys.argv = {['corral', *argv]!r}\n"
            "from corral.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    return done, json.loads(done.stdout.splitlines()[-1])


def test_a_plain_corral_run_loads_neither_typer_nor_another_command_nor_pydantic():
    # refused before any sandbox starts: exercises main()'s dispatch and the plain command line's reading
    done, loaded = _modules_after(["run", "x.py", "-c", "print(1)"])
    assert done.returncode == 2 and "exactly one" in done.stderr
    assert "corral.cli.run_args" in loaded
    assert [name for name in loaded if name.startswith((*OTHER_MODULES, "pydantic", "corral.models"))] == []


@pytest.mark.parametrize("argv", [["run", "x.py", "-c", "print(1)"], ["run", "--timeout", "x", "-c", "print(1)"]])
def test_every_command_freezes_the_heap_as_it_ends_so_exit_collects_nothing(argv):
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 1000))\n"
            f"sys.argv = {['corral', *argv]!r}\n"
            "from corral.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 2 and done.stdout.splitlines()[-1] == "frozen True"


def test_an_unusual_corral_run_goes_through_typer_with_only_its_own_command():
    done, loaded = _modules_after(["run", "--timeout", "x", "-c", "print(1)"])
    assert done.returncode == 2 and "--timeout" in done.stderr
    assert "corral.cli.run_options" in loaded and "typer" in loaded
    assert [name for name in loaded if name.startswith(NOT_TYPER)] == []


def _typer_arguments(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict | None:
    """The keyword arguments typer passes on to corral.cli.run.run for ``corral run ARGS``."""
    seen = []
    monkeypatch.setattr(run, "run", lambda *values: seen.append(values))
    result = CliRunner().invoke(build_app(("run",)), ["run", *args])
    if result.exit_code != 0 or not seen:
        return None
    return dict(zip(inspect.signature(run_options.run).parameters, seen[0]))


@pytest.mark.parametrize("args", [
    ["-c", "print(1)"],
    ["script.py"],
    ["-"],
    ["--code=print(2)", "--language", "javascript", "--json"],
    ["-l", "shell", "-c", "echo $X", "-e", "X=1", "--env=Y=2", "-e", "Z="],
    ["prog.py", "--timeout", "0.5", "--memory", "256", "--pids", "64", "--cpus", "1.5", "--disk", "007"],
    ["--isolation", "process", "--allow-domain", "pypi.org", "--allow-domain=*.example.com", "-c", ""],
    ["--expose", "8000", "--expose", "8001:9001", "--package", "rich==13.9.4", "--index-url", "http://x/simple",
     "-c", "pass"],
])
def test_the_fast_parser_gives_what_typer_gives(args, monkeypatch):
    typer_gives = _typer_arguments(args, monkeypatch)
    fast = {**DEFAULTS, **run_args.parse_fast(args)}
    assert typer_gives is not None
    assert {name: list(value) if isinstance(value, (list, tuple)) else value for name, value in fast.items()} == \
        {name: list(value) if isinstance(value, (list, tuple)) else value for name, value in typer_gives.items()}
    for name, value in fast.items():
        assert type(value) is type(typer_gives[name]) or isinstance(value, (list, tuple)), name


@pytest.mark.parametrize("args", [
    ["--help"], ["--bogus"], ["--timeout", "x", "-c", "1"], ["--timeout", "1e3", "-c", "1"], ["--memory", "1.0"],
    ["--timeout", "-1"], ["-c"], ["-cprint(1)"], ["-c=print(1)"], ["a.py", "b.py"], ["--", "x.py"], ["--json=1"],
    ["-c", "1", "-c", "2"], ["-c", "-1"], ["--memory", "²"],
])
def test_anything_unusual_is_left_to_typer(args):
    assert run_args.parse_fast(args) is None


def test_the_fast_options_are_typers_options():
    command = typer.main.get_command(build_app(("run",))).commands["run"]
    kinds = {int: "int", float: "float", str: "text"}
    declared = {}
    for param in command.params:
        if param.param_type_name == "argument":
            assert param.name == "source"
            continue
        kind = "flag" if param.is_flag else "many" if param.multiple else kinds[param.type_descriptor.annotation]
        for spelling in [*param.opts, *param.secondary_opts]:
            declared[spelling] = (param.name, kind)
    assert declared == run_args.FAST_OPTIONS


def test_the_program_and_typers_declaration_take_the_same_parameters():
    declared = inspect.signature(run_options.run).parameters
    assert list(PROGRAM_PARAMETERS) == list(declared)
    for name, parameter in PROGRAM_PARAMETERS.items():
        default = declared[name].default
        assert parameter.default == (tuple(default) if isinstance(default, list) else default), name


@pytest.mark.parametrize("args", [["run", "--help"], ["run", "--bogus"], ["run", "--timeout", "x", "-c", "1"],
                                  ["keys", "--help"], ["template", "build", "--help"], ["doctor", "--help"],
                                  ["mcp", "--help"]])
def test_a_command_built_alone_behaves_as_in_the_whole_app(args):
    runner = CliRunner()
    alone = runner.invoke(build_app((args[0],)), args, env={"COLUMNS": "100"})
    whole = runner.invoke(build_app(), args, env={"COLUMNS": "100"})
    assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output)


def test_the_whole_app_lists_every_command():
    from corral.cli import app

    listed = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert listed.exit_code == 0
    assert all(name in listed.output for name in COMMANDS)


def test_corral_mcp_without_the_mcp_extra_says_how_to_install_it():
    code = ("import sys\n"
            "sys.modules['mcp'] = sys.modules['mcp_types'] = None  # as if the extra were not installed\n"
            "sys.argv = ['corral', 'mcp']\n"
            "from corral.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 3 and "pip install 'corral[mcp]'" in done.stderr
