"""The unmodified ``e2b-code-interpreter`` SDK against ``corral serve``: state, results, errors, callbacks, contexts."""

from __future__ import annotations

import pytest
from e2b_code_interpreter import AsyncSandbox, Sandbox


@pytest.fixture(scope="module")
def interpreter(server):
    # module-wide, so made before the per-test environment: the same settings, given as arguments
    sandbox = Sandbox.create(timeout=300, api_key=server.key, api_url=server.url, sandbox_url=server.url)
    yield sandbox
    sandbox.kill()


def test_default_template_and_state_between_runs(interpreter):
    assert interpreter.get_info().template_id == "code-interpreter-v1"
    first = interpreter.run_code("x = 20\nprint('side effect')\nx + 22")
    assert first.text == "42" and first.logs.stdout == ["side effect\n"] and first.error is None
    assert [result.is_main_result for result in first.results] == [True]
    second = interpreter.run_code("x * 2")
    assert second.text == "40" and second.execution_count > first.execution_count


def test_display_outputs_and_mime_fields(interpreter):
    execution = interpreter.run_code(
        "class Page:\n"
        "    def _repr_html_(self): return '<b>page</b>'\n"
        "    def __repr__(self): return 'Page()'\n"
        "display(Page())\n"
        "{'a': [1, 2]}")
    shown, main = execution.results
    assert (shown.is_main_result, shown.html, shown.text) == (False, "<b>page</b>", "Page()")
    assert main.is_main_result and main.json == {"a": [1, 2]}


def test_errors_are_data_with_name_value_traceback(interpreter):
    execution = interpreter.run_code("def f():\n    raise ValueError('bad input')\nf()")
    assert execution.error.name == "ValueError" and execution.error.value == "bad input"
    assert "Traceback" in execution.error.traceback and "line 2, in f" in execution.error.traceback
    assert interpreter.run_code("x").text == "20"  # the session survived the error


def test_streaming_callbacks(interpreter):
    seen = {"stdout": [], "stderr": [], "result": [], "error": []}
    interpreter.run_code("import sys\nprint('out')\nprint('err', file=sys.stderr)\n7",
                         on_stdout=lambda m: seen["stdout"].append(m.line),
                         on_stderr=lambda m: seen["stderr"].append(m.line),
                         on_result=lambda r: seen["result"].append(r.text),
                         on_error=lambda e: seen["error"].append(e.name))
    assert seen == {"stdout": ["out\n"], "stderr": ["err\n"], "result": ["7"], "error": []}
    interpreter.run_code("1/0", on_error=lambda e: seen["error"].append(e.name))
    assert seen["error"] == ["ZeroDivisionError"]


def test_javascript_and_contexts(interpreter):
    assert interpreter.run_code("const y = 3; y * 7", language="js").text == "21"
    assert interpreter.run_code("y + 1", language="javascript").text == "4"
    contexts = {context.language: context for context in interpreter.list_code_contexts()}
    assert {"python", "javascript"} <= set(contexts)
    python = interpreter.create_code_context(language="python")
    assert interpreter.run_code("x + 1", context=python).text == "21"  # the language's one session
    with pytest.raises(Exception, match="400|not both"):
        interpreter.run_code("1", language="python", context=python)


def test_commands_and_files_of_a_code_interpreter_sandbox(interpreter):
    interpreter.files.write("data.csv", "a,b\n1,2\n")
    # a string's text is its repr without the quotes, as in E2B's Jupyter
    assert interpreter.run_code("open('data.csv').read()").text == "a,b\\n1,2\\n"
    assert interpreter.commands.run("python3 -c 'print(6*7)'").stdout == "42\n"


async def test_async_run_code(server):
    sandbox = await AsyncSandbox.create(timeout=120)
    try:
        lines = []
        execution = await sandbox.run_code("for i in range(3): print(i)\n'done'",
                                           on_stdout=lambda m: lines.append(m.line))
        assert execution.text == "done" and "".join(lines) == "0\n1\n2\n"
        assert (await sandbox.run_code("i")).text == "2"
    finally:
        await sandbox.kill()


def test_a_template_built_under_an_e2b_name_replaces_the_default(server):
    definition = {"name": "code-interpreter-v1", "base": "python", "env": {"FLAVOUR": "mine"},
                  "steps": [{"files": {"lib/helper.py": "ANSWER = 42\n"}}]}
    with server.client() as corral_api:
        assert corral_api.post("/templates", json=definition).status_code in (200, 201)
    sandbox = Sandbox.create(timeout=60)
    try:
        assert sandbox.get_info().template_id == "code-interpreter-v1"
        assert sandbox.run_code("import sys; sys.path.insert(0, 'lib'); import helper; helper.ANSWER").text == "42"
        assert sandbox.commands.run("echo $FLAVOUR").stdout == "mine\n"
    finally:
        sandbox.kill()
        with server.client() as corral_api:
            corral_api.delete("/templates/code-interpreter-v1")
