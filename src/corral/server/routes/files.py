"""Data plane: upload, download (streamed), list and remove files inside a sandbox."""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from corral.contract.schemas import ListedFile, RenameRequest, listed_file
from corral.errors import LimitExceededError
from corral.hosted.file_transfer import FileTooLarge, read_chunks, write_chunks
from corral.models import FileInfo
from corral.server.auth import Caller, sandbox_access
from corral.server.routes.common import AUTH_ERRORS, errors, service

router = APIRouter(tags=["files"])

Path = Annotated[str, Query(min_length=1, max_length=4096, description="relative paths start at the sandbox's home")]
_CHUNK = 64 * 1024


def _as_sent(request: Request, declared: str) -> str:
    """The ``path`` query parameter as sent: bytes that are not UTF-8 are kept (as surrogateescapes), so a
    file of any name can be addressed (``%FF%FE``); the framework's own decoding replaces them."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        if name == "path":
            return value
    return declared


def file_path(request: Request, path: Path) -> str:
    """A route's ``path``: a file (see :func:`_as_sent`)."""
    return _as_sent(request, path)


def directory_path(request: Request, path: Path = ".") -> str:
    """A listing's ``path``: a directory, the home by default (see :func:`_as_sent`)."""
    return _as_sent(request, path)


_UPLOAD = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


class Written(BaseModel):
    """A file was written."""

    path: str
    size: int


@router.put("/sandboxes/{sandbox_id}/files", response_model=Written, openapi_extra=_UPLOAD,
            responses=errors(*AUTH_ERRORS, 409, 507))
async def upload_file(sandbox_id: str, request: Request, path: str = Depends(file_path),
                      caller: Caller = Depends(sandbox_access),
                      mode: Annotated[int, Query(ge=0, le=0o7777)] = 0o644) -> Written:
    """Create or replace a file (parents are created) with the request body, streamed in chunks."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        try:
            size = await write_chunks(sandbox, path, request.stream(), mode, request.app.state.max_file_bytes)
        except FileTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
    return Written(path=path, size=size)


@router.get("/sandboxes/{sandbox_id}/files", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the file's bytes"}, **errors(*AUTH_ERRORS, 409, 429)})
async def download_file(sandbox_id: str, request: Request, path: str = Depends(file_path),
                        caller: Caller = Depends(sandbox_access)) -> StreamingResponse:
    """The bytes of a regular file, streamed (a big one is read from the sandbox chunk by chunk)."""
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise LimitExceededError(f"{slots.limit} streams are open on this server (the limit): retry shortly")
    stack = contextlib.AsyncExitStack()
    stack.callback(slots.release)
    try:
        sandbox = await stack.enter_async_context(service(request).use(sandbox_id, caller.owner))
        chunks = read_chunks(sandbox, path)
        first = await anext(chunks, b"")  # a missing file is a 404 before the answer starts
    except BaseException:
        await stack.aclose()
        raise

    async def body():
        try:
            for start in range(0, len(first), _CHUNK):
                yield first[start:start + _CHUNK]
            async for part in chunks:
                for start in range(0, len(part), _CHUNK):
                    yield part[start:start + _CHUNK]
        finally:
            await chunks.aclose()
            await stack.aclose()

    return StreamingResponse(body(), media_type="application/octet-stream")


@router.get("/sandboxes/{sandbox_id}/files/list", response_model=list[ListedFile],
            responses=errors(*AUTH_ERRORS, 409))
async def list_files(sandbox_id: str, request: Request, caller: Caller = Depends(sandbox_access),
                     path: str = Depends(directory_path)) -> list[ListedFile]:
    """Entries of a directory (symlinks are not followed); a name that is not UTF-8 also comes as ``name_bytes``."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return [listed_file(entry) for entry in await sandbox.files.list(path)]


@router.delete("/sandboxes/{sandbox_id}/files", status_code=204, response_class=Response,
               responses=errors(*AUTH_ERRORS, 409))
async def remove_file(sandbox_id: str, request: Request, path: str = Depends(file_path),
                      caller: Caller = Depends(sandbox_access), recursive: bool = False) -> Response:
    """Remove a file, an empty directory, or a tree with ``recursive``."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        await sandbox.files.remove(path, recursive=recursive)
    return Response(status_code=204)


@router.get("/sandboxes/{sandbox_id}/files/stat", response_model=FileInfo, responses=errors(*AUTH_ERRORS, 409))
async def stat_file(sandbox_id: str, request: Request, path: str = Depends(file_path),
                    caller: Caller = Depends(sandbox_access)) -> FileInfo:
    """What ``path`` is (a symlink is described, not followed); 404 if nothing is there."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return await sandbox.files.stat(path)


@router.post("/sandboxes/{sandbox_id}/files/dir", response_model=FileInfo, status_code=201,
             responses=errors(*AUTH_ERRORS, 409))
async def make_dir(sandbox_id: str, request: Request, path: str = Depends(file_path),
                   caller: Caller = Depends(sandbox_access), parents: bool = False) -> FileInfo:
    """Create a directory (``parents``: and its missing parents); 409 if something is there."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return await sandbox.files.make_dir(path, parents=parents)


@router.post("/sandboxes/{sandbox_id}/files/rename", response_model=FileInfo, responses=errors(*AUTH_ERRORS, 409))
async def rename_file(sandbox_id: str, body: RenameRequest, request: Request,
                      caller: Caller = Depends(sandbox_access)) -> FileInfo:
    """Move ``source`` to ``destination`` (a file there is replaced)."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return await sandbox.files.rename(body.source, body.destination)
