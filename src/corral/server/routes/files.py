"""Data plane: upload, download (streamed), list and remove files inside a sandbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from corral.models import FileEntry
from corral.protocol import wire
from corral.server.auth import Caller, sandbox_access
from corral.server.routes.common import AUTH_ERRORS, errors, service

router = APIRouter(tags=["files"])

Path = Annotated[str, Query(min_length=1, max_length=4096, description="relative paths start at the sandbox's home")]
_CHUNK = 64 * 1024
_UPLOAD = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


class Written(BaseModel):
    """A file was written."""

    path: str
    size: int


@router.put("/sandboxes/{sandbox_id}/files", response_model=Written, openapi_extra=_UPLOAD,
            responses=errors(*AUTH_ERRORS, 409, 413, 507))
async def upload_file(sandbox_id: str, path: Path, request: Request, caller: Caller = Depends(sandbox_access),
                      mode: Annotated[int, Query(ge=0, le=0o7777)] = 0o644) -> Written:
    """Create or replace a file (parents are created) with the request body."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > wire.MAX_FILE_BYTES:
            raise HTTPException(413, f"file is over the {wire.MAX_FILE_BYTES}-byte limit of one file")
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        size = await sandbox.files.write(path, bytes(body), mode=mode)
    return Written(path=path, size=size)


@router.get("/sandboxes/{sandbox_id}/files", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the file's bytes"}, **errors(*AUTH_ERRORS, 409)})
async def download_file(sandbox_id: str, path: Path, request: Request,
                        caller: Caller = Depends(sandbox_access)) -> StreamingResponse:
    """The bytes of a regular file, streamed."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        data = await sandbox.files.read(path)

    async def chunks():
        for start in range(0, len(data), _CHUNK):
            yield data[start:start + _CHUNK]

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(len(data))})


@router.get("/sandboxes/{sandbox_id}/files/list", response_model=list[FileEntry],
            responses=errors(*AUTH_ERRORS, 409))
async def list_files(sandbox_id: str, request: Request, caller: Caller = Depends(sandbox_access),
                     path: Path = ".") -> list[FileEntry]:
    """Entries of a directory (symlinks are not followed)."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        return await sandbox.files.list(path)


@router.delete("/sandboxes/{sandbox_id}/files", status_code=204, response_class=Response,
               responses=errors(*AUTH_ERRORS, 409))
async def remove_file(sandbox_id: str, path: Path, request: Request, caller: Caller = Depends(sandbox_access),
                      recursive: bool = False) -> Response:
    """Remove a file, an empty directory, or a tree with ``recursive``."""
    async with service(request).use(sandbox_id, caller.owner) as sandbox:
        await sandbox.files.remove(path, recursive=recursive)
    return Response(status_code=204)
