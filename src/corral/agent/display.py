"""Rich results of a Python session block, without Jupyter: runs inside the session worker.

A block's last statement, if it is an expression, is evaluated separately and
its value (unless None) becomes the block's main result; ``display(obj)`` (a
builtin) adds further results as the block runs; matplotlib figures left open
at the end of a block, or shown with ``plt.show()``, become PNG results. A
result is a MIME bundle built from the object's ``_repr_*_`` methods (as
IPython's display protocol defines them) plus ``text/plain`` (its ``repr``).
Each is written as one JSON line on the worker's result pipe; errors too.
"""

from __future__ import annotations

import ast
import base64
import builtins
import importlib.abc
import importlib.util
import io
import os
import sys
import traceback

from corral.protocol import wire

#: ``_repr_<name>_`` method -> MIME type; binary ones are base64-encoded.
_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
    ("_repr_javascript_", "application/javascript"),
    ("_repr_pdf_", "application/pdf"),
)
_BINARY = frozenset({"image/png", "image/jpeg", "application/pdf"})
#: A ``text/plain`` repr is cut to this many characters.
MAX_TEXT_CHARS = 64 * 1024


class Display:
    """Emits results on the result pipe ``fd``; at most ``wire.MAX_RESULTS`` per block."""

    def __init__(self, fd):
        self.fd = fd
        self.count = 0

    def install(self):
        """Make ``display`` a builtin and hook matplotlib (headless, shown figures become results)."""
        builtins.display = self.display
        os.environ.setdefault("MPLBACKEND", "Agg")
        sys.meta_path.insert(0, _PyplotHook(self))

    def display(self, *objects):
        """Show each object as a result of the running block (what IPython's ``display`` does)."""
        for obj in objects:
            self.emit(obj, main=False)

    def emit(self, obj, main):
        """Send one object's MIME bundle."""
        if self.count >= wire.MAX_RESULTS:
            return
        try:
            bundle = mime_bundle(obj)
        except Exception:  # a figure that cannot render, a hostile __getattr__: its repr only
            bundle = {"text/plain": _plain(obj)[:MAX_TEXT_CHARS]}
        line = _encode({"result": bundle, "main": main})
        if line is None or len(line) > wire.MAX_RESULT_BYTES:
            line = _encode({"result": {"text/plain": _plain(obj)[:MAX_TEXT_CHARS]}, "main": main})
        self.count += 1
        _write_all(self.fd, line)

    def error(self, exc, tb):
        """Send the block's uncaught exception: name, value and traceback text."""
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        line = _encode({"error": {"name": type(exc).__name__, "value": _safe_str(exc)[:MAX_TEXT_CHARS],
                                  "traceback": text[-wire.MAX_RESULT_BYTES // 2:]}})
        if line is not None:
            _write_all(self.fd, line)

    def run_cell(self, code, namespace):
        """Run one block, its last expression evaluated as the main result (exceptions propagate)."""
        tree = ast.parse(code, "<string>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<string>", "exec"), namespace)
        if last is not None:
            value = eval(compile(last, "<string>", "eval"), namespace)
            if value is not None:
                builtins._ = value
                if not _is_figure(value):  # a figure is shown with the other open ones, just below
                    self.emit(value, main=True)
        self.show_figures()

    def show_figures(self):
        """Every open matplotlib figure becomes a result, then is closed (only if pyplot was imported)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        try:
            for number in pyplot.get_fignums():
                self.emit(pyplot.figure(number), main=False)
            pyplot.close("all")
        except Exception:
            pass


def mime_bundle(obj):
    """``{mime: data}`` for ``obj``: its ``_repr_*_`` methods, and ``text/plain``."""
    bundle = {}
    if _is_figure(obj):
        buffer = io.BytesIO()
        obj.savefig(buffer, format="png")
        bundle["image/png"] = base64.b64encode(buffer.getvalue()).decode()
    elif not isinstance(obj, type):  # a class's _repr_*_ are unbound functions
        method = _method(obj, "_repr_mimebundle_")
        if method is not None:
            data = _call(method, include=None, exclude=None)
            if isinstance(data, tuple) and data:
                data = data[0]
            if isinstance(data, dict):
                for mime, value in data.items():
                    if isinstance(mime, str) and _jsonable(value):
                        bundle[mime] = value
        for name, mime in _REPR_METHODS:
            if mime in bundle:
                continue
            method = _method(obj, name)
            value = _call(method) if method is not None else None
            if isinstance(value, tuple) and value:  # (data, metadata)
                value = value[0]
            if value is None:
                continue
            if mime in _BINARY:
                if isinstance(value, (bytes, bytearray)):
                    value = base64.b64encode(bytes(value)).decode()
                if isinstance(value, str):
                    bundle[mime] = value
            elif mime == "application/json":
                if _jsonable(value):
                    bundle[mime] = value
            elif isinstance(value, str):
                bundle[mime] = value
        if isinstance(obj, (dict, list)) and "application/json" not in bundle and _jsonable(obj):
            bundle["application/json"] = obj
    bundle.setdefault("text/plain", _plain(obj)[:MAX_TEXT_CHARS])
    return bundle


class _PyplotHook(importlib.abc.MetaPathFinder):
    """Wraps the import of ``matplotlib.pyplot`` so that ``plt.show()`` emits the open figures."""

    def __init__(self, display):
        self.display = display

    def find_spec(self, name, path, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, display = spec.loader, self.display

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                module.show = lambda *args, **kwargs: display.show_figures()

        spec.loader = _Loader()
        return spec


def _is_figure(obj):
    kind = type(obj)
    return kind.__name__ == "Figure" and kind.__module__.startswith("matplotlib") and hasattr(obj, "savefig")


def _method(obj, name):
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _call(method, **kwargs):
    try:
        return method(**kwargs)
    except Exception:  # a broken _repr_ is skipped, as IPython does
        return None


def _plain(obj):
    try:
        return repr(obj)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"


def _safe_str(exc):
    try:
        return str(exc)
    except Exception:
        return ""


def _jsonable(value):
    try:
        wire.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _encode(message):
    try:  # the leading newline ends whatever user code left unterminated on the pipe
        return b"\n" + wire.dumps(message).encode("utf-8", "surrogatepass") + b"\n"
    except (TypeError, ValueError, RecursionError):
        return None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
