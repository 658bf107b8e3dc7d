"""Print corral's import graph: edges between packages, and every import cycle between modules.

    .venv/bin/python scripts/import_graph.py              # package edges, then cycles
    .venv/bin/python scripts/import_graph.py --modules    # module edges instead of package edges

The graph is read from the source with :mod:`ast`, not by importing it, and counts
every import: at module level, inside functions and under ``if TYPE_CHECKING:``
(an import hidden in a function is still a dependency). A package here is a
folder (``corral.backends.microvm``, ``corral.server.e2b``); a module directly in
``src/corral`` (``corral.sandbox``, ``corral.errors``) is its own node.
Exit status 1 if there is a cycle. ``tests/unit/test_layers.py`` holds the layer
rules on this same graph.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "corral"


@dataclass(frozen=True)
class Import:
    """One import of a corral module by another, where it is written."""

    source: str
    target: str
    path: Path
    line: int
    kind: str  # "module", "function" (inside a def) or "type-checking" (under ``if TYPE_CHECKING:``)

    def where(self) -> str:
        """``src/corral/x.py:12`` for a failure message (the full path outside this checkout)."""
        path = self.path.relative_to(SRC.parent) if self.path.is_relative_to(SRC.parent) else self.path
        return f"{path}:{self.line}"

    def __str__(self) -> str:
        note = "" if self.kind == "module" else f" ({self.kind})"
        return f"{self.where()}: {self.source} -> {self.target}{note}"


def discover(src: Path = SRC) -> dict[str, Path]:
    """Every module of the corral package: dotted name -> file."""
    modules = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def lazy_exports(modules: dict[str, Path]) -> dict[str, str]:
    """The root's PEP 562 table ``_LAZY`` (public name -> defining module), read from its source.

    The table is built from literals and ``dict.fromkeys(names, module)``, so it is
    evaluated with no builtins but ``dict``.
    """
    tree = ast.parse(modules[ROOT].read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets) and node.value is not None:
                return eval(compile(ast.Expression(node.value), "_LAZY", "eval"), {"__builtins__": {"dict": dict}})
    return {}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with its kind; ``function`` wins over ``type-checking``."""
    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, kind
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test) and kind == "module":
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), "type-checking")
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), kind)
            else:
                yield from walk(child, kind)
    yield from walk(tree, "module")


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a corral module (``import a.b.c`` imports ``a.b.c``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _targets(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path],
             lazy: dict[str, str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (target := _known(alias.name, modules)) is not None:
                yield target
        return
    if node.level:
        package = module.split(".") if modules[module].name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            yield f"{base}.{alias.name}"
        elif base == ROOT and alias.name in lazy:
            # ``from corral import Sandbox`` runs corral/__init__.py's __getattr__, which imports the defining module.
            yield lazy[alias.name]
        elif (target := _known(base, modules)) is not None:
            yield target


def _lazy_attributes(tree: ast.Module, lazy: dict[str, str]) -> Iterator[tuple[int, str]]:
    """``corral.Sandbox`` after ``import corral``: the attribute imports the module that defines it."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == ROOT
                and node.attr in lazy):
            yield node.lineno, lazy[node.attr]


def imports(modules: dict[str, Path] | None = None) -> list[Import]:
    """Every import of a corral module by a corral module, in file order.

    The root package ``corral/__init__.py`` is the one exception to "every import
    counts": its ``if TYPE_CHECKING:`` block only names its lazy exports (PEP 562)
    for type checkers. At run time ``import corral`` loads only :mod:`corral.errors` and :mod:`corral.version`;
    the module behind a lazy name is loaded when someone reads that name, and such
    reads are edges of the reader (``from corral import Sandbox`` is an edge to
    ``corral.public``). Counting the block would make the root depend on the user API,
    and every module (each import of ``corral.x`` runs the root first) part of one
    cycle with it, hiding the real cycles.
    """
    modules = discover() if modules is None else modules
    lazy = lazy_exports(modules)
    found: dict[Import, None] = {}  # in file order, each (target, line, kind) once per statement
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, kind in _import_nodes(tree):
            if module == ROOT and kind == "type-checking":
                continue
            found.update(dict.fromkeys(Import(module, target, path, node.lineno, kind)
                                       for target in _targets(module, node, modules, lazy) if target != module))
        if any(isinstance(node, ast.Import) and any(a.name == ROOT for a in node.names) for node in ast.walk(tree)):
            found.update(dict.fromkeys(Import(module, target, path, line, "module")
                                       for line, target in _lazy_attributes(tree, lazy) if target != module))
    return list(found)


def component(module: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to: its folder, or the module itself if it sits directly in ``corral/``."""
    if modules[module].name == "__init__.py":
        return module
    package = module.rpartition(".")[0]
    return module if package == ROOT else package


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm, iterative), sorted."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
        graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component_nodes = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component_nodes.append(member)
                        if member == node:
                            break
                    if len(component_nodes) > 1:
                        found.append(sorted(component_nodes))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    """Print the edges and cycles; exit 1 if modules import each other in a cycle."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", action="store_true", help="print module edges instead of package edges")
    args = parser.parse_args(argv)
    modules = discover()
    found = imports(modules)
    if args.modules:
        edges = sorted({(i.source, i.target) for i in found})
    else:
        edges = sorted({(component(i.source, modules), component(i.target, modules)) for i in found}
                       - {(c, c) for c in map(lambda m: component(m, modules), modules)})
    print(f"{'module' if args.modules else 'package'} edges ({len(edges)}):")
    for source, group in _grouped(edges):
        print(f"  {source} -> {', '.join(group)}")
    if not args.modules:
        package_cycles = cycles(edges)
        print(f"package cycles ({len(package_cycles)}):")
        for members in package_cycles:
            print(f"  {' <-> '.join(members)}")
    module_cycles = cycles((i.source, i.target) for i in found)
    print(f"module cycles ({len(module_cycles)}):")
    for members in module_cycles:
        inside = set(members)
        print(f"  {len(members)} modules: {', '.join(members)}")
        for edge in found:
            if edge.source in inside and edge.target in inside:
                print(f"    {edge}")
    return 1 if module_cycles else 0


def _grouped(edges: list[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        by_source[source].append(target)
    yield from sorted(by_source.items())


if __name__ == "__main__":
    sys.exit(main())
