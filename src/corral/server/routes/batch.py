"""``POST /v1/batch``: batch items in, one NDJSON line per result as each completes.

Lines: ``{"type": "result", "result": {BatchResult}}`` per item (``index`` says which), then
``{"type": "done", "count": N}``; or, if the batch broke after the answer began, a last
``{"type": "error", "error": {...}}``. A key over its share of batch runners, or a server
out of stream slots, gets a 429 with ``Retry-After`` before the stream begins. Closing the
connection cancels the items still running.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import Field, Strict

from corral.batch.runner import MAX_CONCURRENCY
from corral.batch.verdicts import BatchResult
from corral.contract.schemas import RequestModel
from corral.errors import CorralError
from corral.server.auth import Caller, api_key
from corral.server.batch import RETRY_AFTER_S, Overloaded
from corral.server.limits import ndjson
from corral.server.routes.common import errors

log = logging.getLogger("corral.server")
router = APIRouter(tags=["batch"])

#: Items one request may carry (the body limit is the other bound).
MAX_ITEMS = 10_000


class BatchRequest(RequestModel):
    """Items (each a BatchItem as JSON; file contents are text) and how to run them."""

    items: list[Any] = Field(max_length=MAX_ITEMS, description="BatchItem objects; a bad one gets its own result")
    concurrency: Annotated[int, Strict()] = Field(default=4, ge=1, le=MAX_CONCURRENCY,
                                                  description="items at once (at most the key's share)")
    ordered: Annotated[bool, Strict()] = False


@router.post("/batch", responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                                        "description": "one BatchResult per line as each completes"},
                                  **errors(401, 403, 429)})
async def run_batch(body: BatchRequest, request: Request, caller: Caller = Depends(api_key)):
    """Run batch items with the key's share of the server's pools; results stream as they complete."""
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise HTTPException(429, f"{slots.limit} streams are open on this server (the limit): retry shortly",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        results = request.app.state.batch.open_batch(caller.owner, body.items, concurrency=body.concurrency,
                                                     ordered=body.ordered)
    except Overloaded as exc:
        slots.release()
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    return StreamingResponse(_lines(results, slots.release), media_type="application/x-ndjson")


async def _lines(results: AsyncIterator[BatchResult], release) -> AsyncIterator[bytes]:
    count = 0
    try:
        async for result in results:
            count += 1
            yield ndjson({"type": "result", "result": result.model_dump(mode="json")})
        yield ndjson({"type": "done", "count": count})
    except Exception as exc:  # the status line is sent: the stream says what broke, never a 500 or a hang
        if not isinstance(exc, CorralError):
            log.exception("batch stream failed")
        yield ndjson({"type": "error", "error": {"type": type(exc).__name__, "message": str(exc)}})
    finally:
        await results.aclose()
        release()


