"""The command-line app: each command is built alone for speed, and behaves as in the whole app."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from corral.cli import _COMMANDS, build_app

OTHER_MODULES = ("corral.cli.doctor", "corral.cli.image", "corral.cli.keys", "corral.cli.serve",
                 "corral.cli.template", "corral.server", "corral.client", "rich", "httpx", "fastapi")


def test_corral_run_loads_only_its_own_command():
    # refused before any sandbox starts: exercises main()'s dispatch and the run command
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n"
            "sys.argv = ['corral', 'run', 'x.py', '-c', 'print(1)']\n"
            "from corral.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 2 and "exactly one" in done.stderr
    loaded = json.loads(done.stdout)
    assert "corral.cli.run" in loaded
    assert [name for name in loaded if name.startswith(OTHER_MODULES)] == []


@pytest.mark.parametrize("args", [["run", "--help"], ["run", "--bogus"], ["run", "--timeout", "x", "-c", "1"],
                                  ["keys", "--help"], ["template", "build", "--help"], ["doctor", "--help"]])
def test_a_command_built_alone_behaves_as_in_the_whole_app(args):
    runner = CliRunner()
    alone = runner.invoke(build_app((args[0],)), args, env={"COLUMNS": "100"})
    whole = runner.invoke(build_app(), args, env={"COLUMNS": "100"})
    assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output)


def test_the_whole_app_lists_every_command():
    from corral.cli import app

    listed = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert listed.exit_code == 0
    assert all(name in listed.output for name in _COMMANDS)
