"""Every corral error survives pickling (they cross processes: a Ray actor's error reaches the caller as it was)."""

from __future__ import annotations

import pickle

import pytest

from corral import errors
from corral.models import ExecutionResult

SAMPLES = [
    errors.InvalidInputError("bad"),
    errors.SandboxStartError("no start"),
    errors.SandboxCrashedError("crashed"),
    errors.NodeLostError("node n1 was lost", "n1"),
    errors.IsolationUnavailableError("process", "no bwrap"),
    errors.FileOperationError("not_found", "no such file: a.txt"),
    errors.PackageInstallError(["rich==1"], ExecutionResult(exit_code=1, stderr="boom")),
    errors.SandboxClosedError("closed"),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda error: type(error).__name__)
def test_errors_pickle_with_their_fields(error: errors.CorralError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_every_error_class_is_covered() -> None:
    covered = {type(error) for error in SAMPLES}
    custom = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.CorralError)
              and "__init__" in vars(cls)}
    assert custom <= covered
