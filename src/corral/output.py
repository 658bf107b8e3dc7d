"""Output callbacks: the type of ``on_stdout``/``on_stderr``, and feeding a run's events to them.

Shared by local sandboxes (:mod:`corral.sandbox`) and hosted ones (:mod:`corral.client`), so a
callback sees the same chunks, in the same order, whichever runs the code.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from corral.errors import ProtocolError
from corral.models import ExecutionResult, OutputEvent

#: Called with each chunk of text a run prints (in the async API it may be a coroutine function).
OutputCallback = Callable[[str], Any]


async def consume(events: AsyncIterator[OutputEvent | ExecutionResult], on_stdout: OutputCallback | None,
                  on_stderr: OutputCallback | None) -> ExecutionResult:
    """Call the callbacks with each output event of ``events`` (awaiting what they return, if awaitable);
    return the result that ends the stream, and close the stream."""
    try:
        async for item in events:
            if isinstance(item, ExecutionResult):
                return item
            callback = on_stdout if item.stream == "stdout" else on_stderr
            if callback is not None:
                outcome = callback(item.data)
                if inspect.isawaitable(outcome):
                    await outcome
    finally:
        await events.aclose()
    raise ProtocolError("the run ended without a result")
