"""The architecture, held by a test: which layer may import which, and no import cycles.

The import graph is read from the source (``scripts/import_graph.py``, which also
prints it) and counts imports inside functions and under ``if TYPE_CHECKING:``: an
import moved into a function to dodge a cycle is still the cycle. The one exception is
the root package's lazy exports, explained in :func:`import_graph.imports`. Each rule
is a row of a table; a failure names every offending import with its file and line.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "import_graph.py"
_spec = importlib.util.spec_from_file_location("import_graph", _SCRIPT)
import_graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = import_graph  # dataclasses look their module up while the class is made
_spec.loader.exec_module(import_graph)

MODULES = import_graph.discover()
IMPORTS = import_graph.imports(MODULES)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@dataclass(frozen=True)
class Forbidden:
    """Modules under ``source`` never import a module under ``target`` (unless under ``exempt``)."""

    source: str
    target: str
    reason: str
    exempt: tuple[str, ...] = ()


@dataclass(frozen=True)
class Only:
    """Modules under ``source`` import from corral only modules under ``allowed``."""

    source: str
    allowed: tuple[str, ...]
    reason: str


FORBIDDEN = [
    Forbidden("corral.client", "corral.server",
              "the client reaches a server over HTTP or the hosted service in-process, never the server package"),
    Forbidden("corral.hosted", "corral.server", "the hosted service knows no HTTP: the routes translate into it"),
    Forbidden("corral.hosted", "corral.client", "the hosted service is below the client that reaches it"),
    Forbidden("corral.contract", "corral.server", "the HTTP contract is shared by server and client, owned by neither"),
    Forbidden("corral.contract", "corral.client", "the HTTP contract is shared by server and client, owned by neither"),
    *(Forbidden("corral.contract", io_layer, "the HTTP contract is plain data: it imports no I/O layer")
      for io_layer in ("corral.hosted", "corral.sandbox", "corral.backends", "corral.host")),
    Forbidden("corral.backends.microvm", "corral.backends.process",
              "the levels are siblings: what both need lives in backends/base or host/"),
    Forbidden("corral.backends.process", "corral.backends.microvm",
              "the levels are siblings: what both need lives in backends/base or host/"),
    Forbidden("corral", "corral.server", "the server is a front-end: only it and the CLI that starts it import it",
              exempt=("corral.server", "corral.cli")),
    Forbidden("corral", "corral.cli", "the CLI is the top: one module per command, imported by nothing below",
              exempt=("corral.cli",)),
]

ONLY = [
    # ``corral.protocol.streams`` is the VM's stream framing, stdlib-only plain data like ``wire``
    # (test_agent_imports.py checks both are stdlib-only): the host copies these two into the guest.
    Only("corral.agent", ("corral.agent", "corral.protocol.wire", "corral.protocol.streams"),
         "the agent runs in the sandbox with only the stdlib and protocol's plain-data part copied in"),
    Only("corral.protocol", ("corral.protocol", "corral.errors"), "the protocol is messages and framing, no I/O"),
]


def _violations(rule: Forbidden | Only) -> list[str]:
    found = []
    for edge in IMPORTS:
        if not _under(edge.source, rule.source):
            continue
        if isinstance(rule, Forbidden):
            if _under(edge.target, rule.target) and not any(_under(edge.source, e) for e in rule.exempt):
                found.append(str(edge))
        elif not any(_under(edge.target, allowed) for allowed in rule.allowed):
            found.append(str(edge))
    return found


@pytest.mark.parametrize("rule", FORBIDDEN, ids=lambda r: f"{r.source}-not-{r.target}")
def test_layer_does_not_import(rule: Forbidden):
    violations = _violations(rule)
    assert not violations, f"{rule.source} must not import {rule.target} ({rule.reason}):\n" + "\n".join(violations)


@pytest.mark.parametrize("rule", ONLY, ids=lambda r: f"{r.source}-only")
def test_layer_imports_only(rule: Only):
    violations = _violations(rule)
    assert not violations, (f"{rule.source} may import only {', '.join(rule.allowed)} ({rule.reason}):\n"
                            + "\n".join(violations))


def test_agent_imports_only_the_standard_library_outside_corral():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    outside = []
    for module, path in MODULES.items():
        if _under(module, "corral.agent"):
            outside.extend(f"{path.relative_to(_SCRIPT.parents[1])}: {name}" for name in _outside_corral(path)
                           if not {name.split(".")[0], name.split(".")[0].lstrip("_")} & stdlib)
    assert not outside, "the agent imports a package that is not in the standard library:\n" + "\n".join(outside)


def _outside_corral(path: Path):
    """Names of every module ``path`` imports that is not part of corral (``_json`` is the stdlib's)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] != "corral")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] != "corral":
            yield node.module


def test_no_import_cycles():
    cycles = import_graph.cycles((edge.source, edge.target) for edge in IMPORTS)
    report = []
    for members in cycles:
        inside = set(members)
        report.append(f"{len(members)} modules import each other: {', '.join(members)}")
        report.extend(f"  {edge}" for edge in IMPORTS if edge.source in inside and edge.target in inside)
    assert not cycles, "import cycles (function-level and TYPE_CHECKING imports count):\n" + "\n".join(report)


# The graph itself must see what the rules rely on, or every rule above passes vacuously.

def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph.discover(tmp_path)


def test_graph_resolves_relative_and_from_imports_and_the_root_lazy_exports(tmp_path: Path):
    modules = _package(tmp_path, {
        "corral/__init__.py": ('_LAZY = {**dict.fromkeys(("Thing",), "corral.inner.deep")}\n'
                               "from typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from corral.inner.deep import Thing\n"),
        "corral/inner/__init__.py": "from . import deep\n",
        "corral/inner/deep.py": "from ..top import x\n",
        "corral/top.py": "import corral\nfrom corral import Thing\ndef f():\n    return corral.Thing\n",
    })
    edges = {(e.source, e.target, e.line, e.kind) for e in import_graph.imports(modules)}
    assert edges == {
        ("corral.inner", "corral.inner.deep", 1, "module"),
        ("corral.inner.deep", "corral.top", 1, "module"),
        ("corral.top", "corral", 1, "module"),
        ("corral.top", "corral.inner.deep", 2, "module"),  # the lazy export, not the root
        ("corral.top", "corral.inner.deep", 4, "module"),  # corral.Thing read after import corral
    }
    assert import_graph.cycles((s, t) for s, t, _, _ in edges) == [["corral.inner.deep", "corral.top"]]


def test_graph_counts_imports_in_functions_and_under_type_checking(tmp_path: Path):
    modules = _package(tmp_path, {
        "corral/__init__.py": "",
        "corral/a.py": ("import typing\nif typing.TYPE_CHECKING:\n    from corral import b\n"
                        "else:\n    import corral.c\n"
                        "class K:\n    async def m(self):\n        import corral.c\n"),
        "corral/b.py": "def f():\n    if True:\n        from corral.a import K\n",
        "corral/c.py": "",
    })
    found = import_graph.imports(modules)
    assert {(e.source, e.target, e.line, e.kind) for e in found} == {
        ("corral.a", "corral.b", 3, "type-checking"),
        ("corral.a", "corral.c", 5, "module"),  # the else branch runs
        ("corral.a", "corral.c", 8, "function"),
        ("corral.b", "corral.a", 3, "function"),
    }
    assert import_graph.cycles((e.source, e.target) for e in found) == [["corral.a", "corral.b"]]
    hidden = next(e for e in found if e.source == "corral.b")
    assert str(hidden).endswith("corral/b.py:3: corral.b -> corral.a (function)")


def test_cycles_finds_each_strongly_connected_group():
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d"), ("f", "a")]
    assert import_graph.cycles(edges) == [["a", "b", "c"], ["d", "e"]]
    assert import_graph.cycles([("a", "b"), ("b", "c")]) == []


def test_the_script_prints_package_edges_and_fails_while_a_cycle_remains(capsys):
    status = import_graph.main([])
    out = capsys.readouterr().out
    assert "package edges (" in out and "\n  corral -> corral.errors, corral.version\n" in out
    has_cycles = bool(import_graph.cycles((e.source, e.target) for e in IMPORTS))
    assert status == (1 if has_cycles else 0)
    assert ("module cycles (0):" in out) is not has_cycles
