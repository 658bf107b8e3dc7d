"""Rich results of session blocks: the last expression, display(), _repr_*_ methods, errors as data."""

from __future__ import annotations

import base64

import pytest

import corral
from corral.protocol import wire

pytestmark = pytest.mark.sandbox

RICH = '''
class Rich:
    def _repr_html_(self): return "<b>rich</b>"
    def _repr_markdown_(self): return "**rich**"
    def _repr_svg_(self): return "<svg/>"
    def _repr_png_(self): return b"\\x89PNG-bytes"
    def _repr_json_(self): return {"k": [1, 2]}
    def _repr_latex_(self): return "$x$"
    def __repr__(self): return "Rich()"

class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": "bundle", "application/vnd.custom": "x"}, {}

class Broken:
    def _repr_html_(self): raise RuntimeError("no")
    def __repr__(self): return "Broken()"
'''


def test_last_expression_and_display_give_mime_bundles(isolation_level):
    with corral.Sandbox() as sandbox:
        sandbox.run(RICH)
        result = sandbox.run("print('side effect')\ndisplay(Rich(), Bundle())\nx = 20\nx + 22")
        assert result.ok and result.stdout == "side effect\n" and result.text == "42"
        rich, bundle, main = result.results
        assert not rich.is_main_result and not bundle.is_main_result and main.is_main_result
        assert rich.data == {"text/html": "<b>rich</b>", "text/markdown": "**rich**", "image/svg+xml": "<svg/>",
                             "image/png": base64.b64encode(b"\x89PNG-bytes").decode(),
                             "application/json": {"k": [1, 2]}, "text/latex": "$x$", "text/plain": "Rich()"}
        assert bundle.data == {"text/plain": "bundle", "application/vnd.custom": "x"}
        assert main.data == {"text/plain": "42"}


@pytest.mark.levels("process")
def test_statements_none_broken_reprs_and_containers():
    with corral.Sandbox() as sandbox:
        sandbox.run(RICH)
        assert sandbox.run("y = 1").results == [] and sandbox.run("None").results == []
        assert sandbox.run("if True:\n    y + 1").results == []  # the last statement is not an expression
        assert sandbox.run("Broken()").results[0].data == {"text/plain": "Broken()"}
        assert sandbox.run("Rich").results[0].data == {"text/plain": "<class '__main__.Rich'>"}
        listed = sandbox.run("{'a': [1, 2]}").results[0]
        assert listed.data == {"application/json": {"a": [1, 2]}, "text/plain": "{'a': [1, 2]}"}
        assert sandbox.run("_").text == "{'a': [1, 2]}"


@pytest.mark.levels("process")
def test_errors_are_data_with_name_value_and_traceback():
    with corral.Sandbox() as sandbox:
        result = sandbox.run("def f():\n    raise ValueError('bad value')\nf()")
        assert result.exit_code == 1 and result.results == []
        assert (result.error.name, result.error.value) == ("ValueError", "bad value")
        assert 'File "<string>", line 2, in f' in result.error.traceback
        assert "corral" not in result.error.traceback and result.error.traceback in result.stderr
        syntax = sandbox.run("1 +")
        assert syntax.error.name == "SyntaxError"
        assert sandbox.run("raise SystemExit(3)").error is None
        assert sandbox.run("print(1)").error is None


@pytest.mark.levels("process")
def test_result_count_and_size_are_capped():
    with corral.Sandbox(memory_mb=512) as sandbox:
        many = sandbox.run("for i in range(200): display(i)")
        assert len(many.results) == wire.MAX_RESULTS
        huge = sandbox.run("class Big:\n    def _repr_html_(self): return 'x' * (8 << 20)\n"
                           "    def __repr__(self): return 'Big()'\nBig()")
        assert huge.results[0].data == {"text/plain": "Big()"}  # the oversized form is dropped
        long_repr = sandbox.run("'y' * 1000000").text
        assert len(long_repr) == 64 * 1024


@pytest.mark.levels("process")
def test_javascript_completion_value_and_error():
    with corral.Sandbox(language="javascript") as sandbox:
        assert sandbox.run("let a = 2").results == []
        result = sandbox.run("a * 21")
        assert result.text == "42" and result.results[0].is_main_result
        assert sandbox.run("({k: [1, 'x']})").text == "{ k: [ 1, 'x' ] }"
        failed = sandbox.run("null.field")
        assert failed.error.name == "TypeError" and "null" in failed.error.value


@pytest.mark.levels("process")
def test_one_shot_runs_have_no_rich_results():
    result = corral.run("1 + 1")
    assert result.results == [] and result.error is None


FIGURE = """
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2, 3], [1, 4, 9])
"""


@pytest.mark.levels("process")
def test_matplotlib_figures_become_png_results():
    # Debian's matplotlib reads /etc/matplotlibrc, which the sandbox does not bind: point it at its own copy
    with corral.Sandbox(memory_mb=512, env={"MATPLOTLIBRC": "/usr/share/matplotlib/mpl-data"}) as sandbox:
        if sandbox.run("import matplotlib", timeout=60).exit_code != 0:
            pytest.skip("matplotlib is not installed where the sandbox's Python finds it (python3-matplotlib)")
        assert sandbox.run("import sys; 'matplotlib.pyplot' in sys.modules").text == "False"  # not imported for us
        left_open = sandbox.run(FIGURE + "print('drawn')")
        # (the stderr may hold a Fontconfig complaint: the sandbox has no /etc/fonts)
        assert left_open.ok and left_open.stdout == "drawn\n" and "Traceback" not in left_open.stderr
        (figure,) = left_open.results
        assert not figure.is_main_result and figure.text == "<Figure size 640x480 with 1 Axes>"
        assert base64.b64decode(figure.data["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
        shown = sandbox.run(FIGURE + "plt.show()\nprint('after show')\ndisplay('later')\n")
        assert [r.text for r in shown.results] == ["<Figure size 640x480 with 1 Axes>", "'later'"]  # shown first
        assert "image/png" in shown.results[0].data
        assert shown.stdout == "after show\n" and "non-interactive" not in shown.stderr  # show() is ours, not Agg's
        assert sandbox.run("plt.get_fignums()").text == "[]"  # shown figures are closed
        last = sandbox.run(FIGURE + "fig")
        assert len(last.results) == 1 and "image/png" in last.results[0].data
        assert [r.text for r in sandbox.run("1 + 1").results] == ["2"]  # no figure left over


@pytest.mark.levels("process")
def test_attack_endless_line_on_the_result_pipe_does_not_grow_the_agent():
    """ATTACK: a block writes 96 MiB without a newline on the worker's result pipe (fd 4), which the agent
    reads; it must drop what cannot be a result instead of buffering it (it did, without bound)."""
    with corral.Sandbox(memory_mb=512, timeout=60) as sandbox:
        before = sandbox.run("int(open('/proc/1/status').read().split('VmHWM:')[1].split()[0])").text
        flood = sandbox.run("import os\nchunk = b'x' * 65536\nfor _ in range(1536): os.write(4, chunk)")
        assert flood.exit_code == 0
        after = sandbox.run("int(open('/proc/1/status').read().split('VmHWM:')[1].split()[0])")
        assert after.ok and after.text is not None
        assert int(after.text) - int(before) < 32 * 1024, (before, after.text)  # KiB: far below the 96 MiB sent
        assert sandbox.run("6 * 7").text == "42"  # the line was discarded; results work again
