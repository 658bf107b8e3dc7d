"""The agent must stay stdlib-only: it runs inside sandboxes with nothing installed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import corral.agent

AGENT_DIR = Path(corral.agent.__file__).parent
ALLOWED_CORRAL = {"corral.agent", "corral.protocol", "corral.protocol.wire", "corral.protocol.streams"}


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            if node.module in ("corral.agent", "corral.protocol"):
                yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_agent_imports_only_stdlib_and_wire():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in AGENT_DIR.glob("*.py"):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "corral":
                assert module in ALLOWED_CORRAL or module.startswith("corral.agent."), (path.name, module)
            else:
                assert top in stdlib or top.lstrip("_") in stdlib or top in ("_json", "_signal"), (path.name, module)


def test_wire_and_streams_are_stdlib_only():
    import corral.protocol.streams as streams
    import corral.protocol.wire as wire

    for module_file in (wire.__file__, streams.__file__):
        modules = set(imported_modules(Path(module_file)))
        assert all(module.split(".")[0] in sys.stdlib_module_names or module in ("_json", "__future__")
                   for module in modules)
