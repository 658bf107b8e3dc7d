"""envd's plain HTTP routes: ``GET /health``, and ``GET``/``POST /files`` (download and upload).

Uploads are multipart (each part named ``file``, its filename the destination
path) or a raw ``application/octet-stream`` body with ``?path=`` (``Content-Encoding:
gzip`` allowed, inflated as it arrives); both are
streamed into the sandbox with corral's chunked transfer, so size is bounded by
``--max-file-mb`` and the sandbox's disk, not by memory.
"""

from __future__ import annotations

import contextlib
import posixpath
import zlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.formparsers import MultiPartException

from corral.contract.states import SandboxState
from corral.errors import FileOperationError, LimitExceededError, NotFoundError
from corral.hosted.file_transfer import FileTooLarge, read_chunks, write_chunks
from corral.server.e2b.errors import E2BError, PlainErrorRoute, gone
from corral.server.e2b.identity import current, data_plane_sandbox, service_of
from corral.server.e2b.paths import absolute
from corral.server.e2b.rpc import user_of

router = APIRouter(route_class=PlainErrorRoute, include_in_schema=False)

#: Most files one multipart upload may hold.
MAX_UPLOAD_FILES = 1000
_CHUNK = 64 * 1024


@router.get("/health")
async def health(request: Request) -> Response:
    """204 while the named sandbox runs, else 502 "was not found" (no credentials needed, as in E2B)."""
    e2b_id = request.headers.get("e2b-sandbox-id")
    if e2b_id:
        try:
            running = current(service_of(request), e2b_id, None).state is SandboxState.RUNNING
        except NotFoundError:
            running = False
        if not running:
            raise gone(e2b_id)
    return Response(status_code=204)


def _file_error(exc: FileOperationError, path: str) -> E2BError | FileOperationError:
    if exc.code == "not_found":
        return E2BError(404, f"{path}: no such file")
    if exc.code in ("is_directory", "invalid", "not_directory"):
        return E2BError(400, f"{path}: not a regular file")
    return exc


@router.get("/files")
async def download(request: Request) -> Response:
    """A file's bytes, streamed."""
    sandbox_id, owner = data_plane_sandbox(request)
    user_of(request)
    path = absolute(request.query_params.get("path"))
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly")
    stack = contextlib.AsyncExitStack()
    stack.callback(slots.release)
    try:
        sandbox = await stack.enter_async_context(service_of(request).use(sandbox_id, owner))
        chunks = read_chunks(sandbox, path)
        try:
            first = await anext(chunks, b"")
        except FileOperationError as exc:
            raise _file_error(exc, path) from None
    except BaseException:
        await stack.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            for start in range(0, len(first), _CHUNK):
                yield first[start:start + _CHUNK]
            async for part in chunks:
                yield part
        finally:
            await chunks.aclose()
            await stack.aclose()

    return StreamingResponse(body(), media_type="application/octet-stream")


def _written(path: str) -> dict:
    return {"path": path, "name": posixpath.basename(path), "type": "file"}


@router.post("/files")
async def upload(request: Request) -> JSONResponse:
    """Write one file (raw body) or several (multipart); parents are created, files replaced."""
    sandbox_id, owner = data_plane_sandbox(request)
    user_of(request)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if encoding not in ("identity", "gzip") or encoding == "gzip" and kind == "multipart/form-data":
        raise E2BError(400, f"Content-Encoding {encoding!r}: identity, or gzip for a raw body")
    limit = request.app.state.max_file_bytes
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            if kind == "multipart/form-data":
                return JSONResponse(await _multipart(request, sandbox, limit))
            path = absolute(request.query_params.get("path"))
            body = request.stream() if encoding == "identity" else gunzip(request.stream())
            await write_chunks(sandbox, path, body, 0o644, limit)
            return JSONResponse([_written(path)])
        except FileTooLarge as exc:
            raise E2BError(413, str(exc)) from None


async def gunzip(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The decompressed bytes of a gzip stream, at most _CHUNK at a time (the size limit sees every one,
    so a small body that inflates hugely is cut off at the limit); E2BError 400 if it is not gzip."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        async for chunk in chunks:
            data = chunk
            while data:
                out = inflater.decompress(data, _CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield out
                if inflater.eof:
                    break
        if not inflater.eof:
            raise E2BError(400, "the gzip body ended early")
    except zlib.error as exc:
        raise E2BError(400, f"the body is not valid gzip: {exc}") from None


async def _multipart(request: Request, sandbox, limit: int) -> list[dict]:
    try:
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
    except (MultiPartException, AssertionError) as exc:
        raise E2BError(400, f"multipart body: {exc}") from None
    try:
        parts = [part for name, part in form.multi_items() if name == "file" and hasattr(part, "read")]
        if not parts:
            raise E2BError(400, "multipart body without a part named 'file'")
        only = request.query_params.get("path")
        written = []
        for part in parts:
            path = absolute(only if only and len(parts) == 1 else part.filename, "filename")

            async def chunks(upload=part) -> AsyncIterator[bytes]:
                while chunk := await upload.read(_CHUNK):
                    yield chunk

            await write_chunks(sandbox, path, chunks(), 0o644, limit)
            written.append(_written(path))
        return written
    finally:
        await form.close()
