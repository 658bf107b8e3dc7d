"""What the cluster pool gives back: corral's own results, plus the node that produced them.

:class:`ClusterExecutionResult` is an :class:`corral.ExecutionResult` and
:class:`ClusterBatchResult` a :class:`corral.BatchResult`, each with ``node_id``
(the Ray node id of the sandbox host that ran it; ``None`` when nothing ran, for
an invalid item or one whose node was lost). Both pickle, so they cross Ray as they are.
"""

from __future__ import annotations

from corral.batch.verdicts import BatchError, BatchResult
from corral.models import ExecutionResult


class ClusterExecutionResult(ExecutionResult):
    """An ExecutionResult and the Ray node it ran on."""

    node_id: str


class ClusterBatchResult(BatchResult):
    """A BatchResult and the Ray node its item ran on (None if it ran nowhere)."""

    node_id: str | None = None
    #: How many times the item was started (more than 1 only for ``retry_safe`` items whose node was lost).
    attempts: int = 1


def placed_run(result: ExecutionResult, node_id: str) -> ClusterExecutionResult:
    """``result`` marked with ``node_id`` (no re-validation: it is already a valid result)."""
    return ClusterExecutionResult.model_construct(**dict(result), node_id=node_id)


def placed_item(result: BatchResult, node_id: str | None, attempts: int = 1) -> ClusterBatchResult:
    """``result`` marked with ``node_id`` and how many times the item was started."""
    return ClusterBatchResult.model_construct(**dict(result), node_id=node_id, attempts=attempts)


def lost_item(index: int, message: str, attempts: int) -> ClusterBatchResult:
    """The result of an item whose node died while it ran: outcome unknown (``sandbox_error``)."""
    return ClusterBatchResult(index=index, verdict="sandbox_error", attempts=attempts,
                              error=BatchError(type="SandboxCrashedError", message=message))
