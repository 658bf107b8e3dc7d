"""The code interpreter's HTTP API (port 49999): ``POST /execute`` and ``/contexts``.

A run is corral's session run (state is kept between runs) answered as E2B's
NDJSON: ``number_of_executions``, output lines with timestamps as the run
prints, then its rich results (corral reports them when the block ends: the
last expression's value is the main one), an ``error`` if the code failed, and
``end_of_execution``. A context is one session interpreter: corral keeps one
per language in a sandbox, so each language has one context (its id is the
language) and ``restart`` is refused. The SDK sends no credentials on the
context calls, and they touch no sandbox: they describe these fixed contexts.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.errors import CorralError, LimitExceededError
from corral.models import DisplayResult, ExecutionResult, OutputEvent
from corral.server.e2b.errors import E2BError, PlainErrorRoute
from corral.server.e2b.identity import data_plane_sandbox, service_of

router = APIRouter(route_class=PlainErrorRoute, include_in_schema=False)

#: E2B language names -> corral's session languages.
LANGUAGES = {"python": "python", "javascript": "javascript", "js": "javascript", "bash": "shell"}
#: MIME types of a result -> E2B's field names.
MIME_FIELDS = {"text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
               "image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex",
               "application/json": "json", "application/javascript": "javascript", "e2b/data": "data",
               "e2b/chart": "chart"}
#: Execution counts kept before those of sandboxes that are gone are dropped.
MAX_COUNTED = 10_000
#: Longest a run may take (the SDK bounds the whole stream by its own timeout, 300 s by default).
MAX_RUN_S = 3600.0


class ExecuteBody(BaseModel):
    """``POST /execute``."""

    model_config = ConfigDict(extra="ignore")

    code: str = Field(max_length=1024 * 1024)
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = None


def _language(language: str | None, context_id: str | None) -> str:
    if language is not None and context_id is not None:
        raise E2BError(400, "give language or context_id, not both")
    name = (context_id or language or "python").lower()
    if name not in LANGUAGES:
        raise E2BError(400 if context_id is None else 404,
                       f"{'context' if context_id else 'language'} {name!r}: corral runs "
                       f"{', '.join(sorted(LANGUAGES))}")
    return LANGUAGES[name]


def _line(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "replace") + b"\n"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def error_of(result: ExecutionResult) -> dict | None:
    """E2B's ``error`` of a failed run: the exception's name, value and traceback."""
    if result.error is not None:
        return {"name": result.error.name, "value": result.error.value, "traceback": result.error.traceback}
    if result.ok:
        return None
    if result.timed_out:
        return {"name": "TimeoutError", "value": "the run passed its time limit", "traceback": result.stderr}
    if result.oom_killed:
        return {"name": "MemoryError", "value": "the run passed its memory limit", "traceback": result.stderr}
    return {"name": "UnexpectedEndOfExecution", "value": f"the run ended with exit code {result.exit_code}",
            "traceback": result.stderr}


def result_line(result: DisplayResult) -> dict:
    """E2B's ``result`` line of a MIME bundle: its known types under E2B's field names, the rest in ``extra``."""
    line: dict = {"type": "result", "is_main_result": result.is_main_result}
    extra = {}
    for mime, value in result.data.items():
        name = MIME_FIELDS.get(mime)
        if name is None:
            extra[mime] = value
        elif name == "text" and isinstance(value, str):
            line["text"] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value
        else:
            line[name] = value
    if extra:
        line["extra"] = extra
    return line


@router.post("/execute")
async def execute(request: Request) -> Response:
    """Run code in a context's session; NDJSON as it runs."""
    sandbox_id, owner = data_plane_sandbox(request)
    try:
        body = ExecuteBody.model_validate_json(await request.body())
    except ValidationError as exc:
        raise E2BError(400, "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                      for e in exc.errors())) from None
    language = _language(body.language, body.context_id)
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly")
    try:
        async with service_of(request).use(sandbox_id, owner) as sandbox:
            stream = sandbox.stream(body.code, language=language, env=body.env_vars or {}, timeout=MAX_RUN_S)
    except BaseException:
        slots.release()
        raise

    async def lines() -> AsyncIterator[bytes]:
        try:
            async with service_of(request).use(sandbox_id, owner):
                counts = request.app.state.e2b_executions
                if len(counts) > MAX_COUNTED:  # forget the counts of sandboxes that are gone
                    live = service_of(request).live
                    for key in [key for key in counts if key[0] not in live]:
                        del counts[key]
                counts[sandbox_id, language] = count = counts.get((sandbox_id, language), 0) + 1
                yield _line({"type": "number_of_executions", "execution_count": count})
                async for item in stream:
                    if isinstance(item, OutputEvent):
                        yield _line({"type": item.stream, "text": item.data, "timestamp": _now()})
                        continue
                    for result in item.results:
                        yield _line(result_line(result))
                    error = error_of(item)
                    if error is not None:
                        yield _line({"type": "error", **error})
        except CorralError as exc:
            yield _line({"type": "error", "name": type(exc).__name__, "value": str(exc), "traceback": ""})
        finally:
            await stream.aclose()
            slots.release()
        yield _line({"type": "end_of_execution"})

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _context(language: str) -> dict:
    return {"id": language, "language": language, "cwd": "/home/user"}


@router.post("/contexts")
async def create_context(request: Request) -> JSONResponse:
    """The context of a language (corral has one session per language in a sandbox)."""
    try:
        given = json.loads(await request.body() or b"{}")
    except ValueError:
        raise E2BError(400, "the request body is not JSON") from None
    if not isinstance(given, dict):
        raise E2BError(400, "the request body must be a JSON object")
    language = given.get("language") or "python"
    if not isinstance(language, str) or language.lower() not in LANGUAGES:
        raise E2BError(400, f"language {language!r}: corral runs {', '.join(sorted(LANGUAGES))}")
    cwd = given.get("cwd")
    if cwd not in (None, "/home/user"):
        raise E2BError(400, "corral's contexts run in /home/user")
    return JSONResponse(_context(language.lower()))


@router.get("/contexts")
async def list_contexts(request: Request) -> JSONResponse:
    """One context per language."""
    return JSONResponse([_context(language) for language in ("python", "javascript", "bash")])


@router.post("/contexts/{context_id}/restart")
async def restart_context(context_id: str, request: Request) -> Response:
    """Refused: corral's session interpreter cannot be restarted on its own."""
    raise E2BError(501, "corral cannot restart one session interpreter; create a new sandbox instead")


@router.delete("/contexts/{context_id}")
async def remove_context(context_id: str, request: Request) -> Response:
    """Refused for the per-language contexts, which live as long as the sandbox."""
    _language(None, context_id)
    raise E2BError(501, "corral's per-language contexts live as long as the sandbox")
