"""Both error boundaries, for every error there is: HTTP (server answer -> client exception) and the agent's codes.

The CorralError subclasses are found by walking the class tree after importing every corral module
(but the agent's), so a class added later is covered without touching this file.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import get_args

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import corral
from corral import errors
from corral.agent_errors import MEANING, OVERRIDES, agent_error
from corral.client import remote
from corral.client.terminal import _refusal
from corral.contract.errors import NEAREST_BASE, TABLE, error_for_status, rebuild, status_of, type_name_of
from corral.errors import CorralError, FileOperationError
from corral.models import ExecutionResult
from corral.protocol import Error
from corral.protocol.messages import ErrorCode
from corral.server import app as server_app

for _module in pkgutil.walk_packages(corral.__path__, "corral."):
    if not _module.name.startswith("corral.agent") and not _module.name.endswith("__main__"):
        importlib.import_module(_module.name)

AGENT_SOURCE = Path(corral.__file__).parent / "agent"
CODES = get_args(ErrorCode)


def _subclasses(kind: type) -> list[type]:
    found = []
    for sub in kind.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


ERROR_CLASSES = sorted(set(_subclasses(CorralError)) | {CorralError}, key=lambda kind: kind.__qualname__)

#: How to build the classes that need more than a message (a new one of those fails here until added).
FACTORIES = {
    errors.IsolationUnavailableError: lambda: errors.IsolationUnavailableError("microvm", "no /dev/kvm"),
    errors.PackageInstallError: lambda: errors.PackageInstallError(
        ["corral-demo==1.0.0"], ExecutionResult(exit_code=1, stderr="no such package")),
    errors.NodeLostError: lambda: errors.NodeLostError("node 7 died", "node-7"),
}


def _samples(kind: type) -> list[CorralError]:
    if kind is FileOperationError:
        return [FileOperationError(code, f"a {code} failure") for code in CODES]
    return [FACTORIES[kind]() if kind in FACTORIES else kind(f"a {kind.__name__}")]


def _served(exc: CorralError) -> tuple[int, bytes]:
    """The real server's answer to a route that raises ``exc``."""
    app = FastAPI()
    server_app._add_error_handlers(app)

    @app.get("/fail")
    async def fail():
        raise exc

    response = TestClient(app, raise_server_exceptions=False).get("/fail")
    return response.status_code, response.content


def test_the_walk_finds_the_errors_defined_outside_corral_errors():
    names = {kind.__name__ for kind in ERROR_CLASSES}
    assert {"Overloaded", "FileTooLarge", "NodeLostError", "StorageFullError"} <= names
    assert set(errors.__all__) <= names


@pytest.mark.parametrize("kind", ERROR_CLASSES, ids=lambda kind: kind.__name__)
def test_every_error_comes_back_from_the_server_as_its_class_with_its_message(kind):
    for exc in _samples(kind):
        status, body = _served(exc)
        assert status == status_of(exc) and 400 <= status < 600
        rebuilt = remote._error(status, body)
        public = getattr(errors, type_name_of(exc))
        assert isinstance(exc, public)  # named by itself or its nearest base in corral.errors
        assert type(rebuilt) is NEAREST_BASE.get(public, public)
        assert str(rebuilt) == str(exc)
        if isinstance(exc, FileOperationError):
            assert rebuilt.code == exc.code
        if type(rebuilt) is public:  # a class the client keeps is answered the same way again
            assert status_of(rebuilt) == status


def test_only_documented_classes_lose_their_class_and_only_to_a_base():
    for kind, base in NEAREST_BASE.items():
        assert issubclass(kind, base) and kind is not base
    for kind in ERROR_CLASSES:
        if kind in (FileOperationError, *NEAREST_BASE) or kind.__module__ != "corral.errors":
            continue
        assert type(rebuild(kind.__name__, "m", None)) is kind


@pytest.mark.parametrize("status", sorted({status for _, _, status in TABLE}))
def test_a_status_without_an_error_body_means_the_class_of_its_first_row(status):
    kind = error_for_status(status)
    assert kind is next(row_kind for row_kind, _, row_status in TABLE if row_status == status)
    for answer in (remote._error(status, b"<html>bad gateway</html>"), _refusal(status, "refused")):
        assert type(answer) is kind
    assert "bad gateway" in str(remote._error(status, b"<html>bad gateway</html>"))


def test_the_statuses_the_clients_rely_on():
    assert [error_for_status(status) for status in (400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504, 507)] == [
        errors.InvalidInputError, errors.AuthenticationError, errors.AuthenticationError, errors.NotFoundError,
        errors.SandboxClosedError, errors.InvalidInputError, errors.InvalidInputError, errors.LimitExceededError,
        errors.OutcomeUnknownError, errors.TransientError, errors.OutcomeUnknownError, errors.StorageFullError]
    assert error_for_status(418) is CorralError
    assert status_of(FileOperationError("too_large", "x")) == 413 and status_of(FileOperationError("odd", "x")) == 502
    assert status_of(CorralError("x")) == 500


#: The documented table (docs/errors.md): code -> class, for every operation but the ones that differ.
EXPECTED = {
    "invalid": errors.InvalidInputError, "too_large": errors.InvalidInputError, "not_found": errors.NotFoundError,
    "busy": errors.LimitExceededError, "unknown_target": errors.SandboxClosedError, "broken": errors.TransientError,
    "internal": errors.ProtocolError, "exists": FileOperationError, "is_directory": FileOperationError,
    "not_directory": FileOperationError, "permission": FileOperationError, "read_only": FileOperationError,
    "no_space": FileOperationError,
}


@pytest.mark.parametrize("operation", ["run", "process", "file", "terminal", "network"])
@pytest.mark.parametrize("code", CODES)
def test_every_agent_code_becomes_the_class_of_the_table(code, operation):
    exc = agent_error(Error(id=3, code=code, message="the agent's words"), operation)
    expected = EXPECTED[code]
    if operation == "file" and code != "invalid":
        expected = FileOperationError
    if (operation, code) == ("network", "busy"):
        expected = errors.InvalidInputError
    assert type(exc) is expected
    assert "the agent's words" in str(exc)
    if isinstance(exc, FileOperationError):
        assert exc.code == code
    if type(exc) is errors.ProtocolError:  # says what was refused and why
        assert f"the {operation}" in str(exc) and "(internal)" in str(exc)


def test_the_table_has_every_protocol_code_and_no_other():
    assert set(MEANING) == set(CODES) == set(EXPECTED)
    assert {code for _, code in OVERRIDES} <= set(CODES)


def _codes_the_agent_sends() -> set[str]:
    """Every error code written in the agent's source: the first argument of its error classes, the
    ``code`` of an error frame it builds, and its errno table."""
    constructors = {"RequestError", "FileOpError", "ProcessError", "PtyError"}
    found: set[str] = set()
    for path in AGENT_SOURCE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in constructors:
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    found.add(first.value)
                else:  # a code passed on from another agent error, or from the errno table
                    assert ast.unparse(first) in ("exc.code", "code"), f"{path.name}:{node.lineno}"
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "code" and isinstance(value, ast.Constant):
                        found.add(value.value)
            elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_ERRNO_CODES":
                found |= {value.value for value in node.value.values}
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "_ERRNO_CODES.get":
                found.add(node.args[1].value)
    return found


def test_every_code_the_agent_sends_is_in_the_table():
    sent = _codes_the_agent_sends()
    assert {"invalid", "too_large", "busy", "broken", "unknown_target", "not_found", "internal", "read_only"} <= sent
    assert sent <= set(MEANING), sent - set(MEANING)
