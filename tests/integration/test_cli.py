"""Every command line from the README, as a user would type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox
CORRAL = [sys.executable, "-m", "corral.cli"]


def corral(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CORRAL, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def test_run_python_by_default():
    done = corral("run", "-c", "print(1)")
    assert (done.returncode, done.stdout) == (0, "1\n")


def test_run_javascript_and_shell():
    assert corral("run", "-l", "javascript", "-c", "console.log(2)").stdout == "2\n"
    assert corral("run", "-l", "shell", "-c", "echo $((1+2)) | tr 3 x").stdout == "x\n"


def test_run_file_with_limits_and_env(tmp_path: Path):
    script = tmp_path / "script.py"
    script.write_text("import os; print(os.environ['NAME'])")
    done = corral("run", str(script), "--timeout", "5", "--memory", "256", "-e", "NAME=value")
    assert (done.returncode, done.stdout) == (0, "value\n")
    js = tmp_path / "prog.js"
    js.write_text("console.log('from file')")
    assert corral("run", str(js)).stdout == "from file\n"


def test_code_from_stdin():
    assert corral("run", "-", stdin="print(3)\n").stdout == "3\n"


def test_exit_code_passes_through():
    assert corral("run", "-c", "import sys; sys.exit(7)").returncode == 7


def test_json_output():
    done = corral("run", "--json", "-c", "print(1)")
    result = json.loads(done.stdout)
    assert result["stdout"] == "1\n" and result["exit_code"] == 0 and "total_ms" in result["timing"]


def test_isolation_choice():
    assert corral("run", "--isolation", "process", "-c", "print(1)").stdout == "1\n"
    bad = corral("run", "--isolation", "nonsense", "-c", "print(1)")
    assert bad.returncode == 2 and "isolation" in bad.stderr


def test_bad_input_is_refused_with_a_message():
    blocked = corral("run", "-e", "LD_PRELOAD=x", "-c", "print(1)")
    assert blocked.returncode == 2 and "LD_PRELOAD" in blocked.stderr
    both = corral("run", "x.py", "-c", "print(1)")
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_timeout_message():
    done = corral("run", "--timeout", "0.5", "-c", "import time; time.sleep(10)")
    assert done.returncode == 137 and "timed out" in done.stderr


@pytest.mark.parametrize(("args", "code", "note"), [
    (["--memory", "64"], "x = bytearray(10**9)",
     "corral: the program ran out of memory (limit 64 MB) and was killed"),
    ([], "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
     "corral: the program was killed by signal SIGSEGV (11)"),
    ([], "print('x' * (20 * 2**20))", "corral: stdout was truncated at the output limit"),
    (["--timeout", "0.5"], "import time; time.sleep(10)", "corral: the program timed out after 0.5 s and was killed"),
])
def test_every_way_a_run_ends_is_said_on_stderr(args, code, note):
    for json_flag in ([], ["--json"]):
        done = corral("run", *json_flag, *args, "-c", code)
        assert note in done.stderr.splitlines(), (json_flag, done.returncode, done.stderr[-500:])
        if json_flag:
            json.loads(done.stdout)  # the notes never mix into the JSON


def test_doctor(isolation_level):
    human = corral("doctor")
    assert human.returncode == 0 and "process" in human.stdout and "microvm" in human.stdout
    report = json.loads(corral("doctor", "--json").stdout)
    assert report["auto"] == isolation_level and report["levels"]["process"]["available"] is True
    assert "seccomp" in report["levels"]["process"]["details"]
    if isolation_level == "microvm":
        assert {"qemu", "accelerator"} <= set(report["levels"]["microvm"]["details"])


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("corral")
    assert script.exists() and os.access(script, os.X_OK)


def test_network_ports_and_packages_flags(http_server):
    http_server.routes["/x"] = (200, {}, b"through the proxy")
    fetch = ("import urllib.request, sys\n"
             "try: print(urllib.request.urlopen(sys.argv[0] if False else URL, timeout=10).read().decode())\n"
             "except Exception as exc: print('ERR', exc)")
    url = f"http://127.0.0.1:{http_server.port}/x"
    allowed = corral("run", "--allow-domain", "127.0.0.1", "-c", f"URL = {url!r}\n{fetch}",
                     "-e", "NO_PROXY=", "-e", "no_proxy=")
    assert allowed.stdout == "through the proxy\n", allowed.stderr
    refused = corral("run", "--allow-domain", "pypi.org", "-c", f"URL = {url!r}\n{fetch}", "-e", "NO_PROXY=", "-e", "no_proxy=")
    assert refused.stdout.startswith("ERR") and "403" in refused.stdout
    exposed = corral("run", "--expose", "8080", "-c", "print('ok')")
    assert exposed.returncode == 0 and "sandbox port 8080 is at http://127.0.0.1:" in exposed.stderr
    bad = corral("run", "--package", "requests", "-c", "print(1)")
    assert bad.returncode == 2 and "pinned" in bad.stderr
    bad_port = corral("run", "--expose", "80:80", "-c", "print(1)")
    assert bad_port.returncode == 2 and "--expose" in bad_port.stderr


#: Runs `corral run -c ...` through the console script's main(), then says whether pydantic scanned for plugins.
_PLUGIN_SCAN_PROBE = (
    "import atexit, sys\n"
    "def report():\n"
    "    from pydantic.plugin import _loader\n"
    "    sys.stderr.write(f'plugins scanned: {_loader._plugins is not None}\\n')\n"
    "atexit.register(report)\n"
    "sys.argv = ['corral', 'run', '-c', 'import os; print(\"PYDANTIC_DISABLE_PLUGINS\" in os.environ)']\n"
    "import corral.cli\n"
    "corral.cli.main()\n"
)


@pytest.mark.parametrize(("preset", "scanned"), [(None, False), ("", True)])
def test_run_skips_the_pydantic_plugin_search_unless_the_user_set_it(preset, scanned):
    env = {key: value for key, value in os.environ.items() if key != "PYDANTIC_DISABLE_PLUGINS"}
    if preset is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = preset
    done = subprocess.run([sys.executable, "-c", _PLUGIN_SCAN_PROBE], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"  # the sandbox never sees the variable, set or not
    assert f"plugins scanned: {scanned}" in done.stderr
