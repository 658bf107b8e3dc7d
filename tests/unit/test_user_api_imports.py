"""The user API's import graph: no cycles (function-level imports counted), none hidden in functions,
and ``corral.run`` / ``corral.Pool`` without the client (httpx, the hosted service)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import corral

SOURCE = Path(corral.__file__).parent
#: The user API: the engine, the sync twins, the bridge, the client and the public classes.
USER_API = ("corral", "corral.sandbox", "corral.sync", "corral.sync_bridge", "corral.sync_commands",
            "corral.sync_files", "corral.oneshot", "corral.pool", "corral.lease", "corral.output", "corral.public",
            "corral.commands", "corral.client", "corral.cluster.sync", "corral.cluster.session")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        name = ".".join(("corral", *path.relative_to(SOURCE).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    return modules


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported corral module, inside a function) for every runtime import (not under TYPE_CHECKING)."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if _is_type_checking(node):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, in_function) for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                if target in modules and target != name:
                    found.append((target, in_function))
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def _in_user_api(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in USER_API if prefix != "corral") \
        or name == "corral"


def test_no_import_cycle_through_the_user_api():
    modules = _modules()
    edges = {name: {target for target, _ in _imports(name, path, modules)} for name, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            for target in edges.get(current, ()):
                if target == goal:
                    return True
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return False

    cycles = sorted(name for name in modules if _in_user_api(name) and reaches(name, name))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_no_import_hidden_in_a_function_of_the_user_api():
    modules = _modules()
    hidden = sorted((name, target) for name, path in modules.items() if _in_user_api(name)
                    for target, in_function in _imports(name, path, modules) if in_function)
    assert hidden == []


def test_corral_run_and_the_sync_api_do_not_import_the_client():
    program = ("import sys, corral, corral.sync; corral.run; corral.Pool; corral.arun; "
               "print(sorted(m for m in sys.modules if m.startswith(('httpx', 'corral.client', 'corral.hosted', "
               "'corral.public', 'corral.server'))))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
    named = subprocess.run([sys.executable, "-c", "import sys, corral; corral.Sandbox; print('corral.client' in sys.modules)"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert named.stdout.strip() == "True"  # the public Sandbox carries the hosted entry points
