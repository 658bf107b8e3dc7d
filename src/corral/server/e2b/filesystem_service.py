"""envd's ``filesystem.Filesystem`` Connect service over corral's file API.

Stat finds the entry in its parent's listing; MakeDir and Move run ``mkdir -p``
and ``mv`` in the sandbox (as corral's own chunked file transfer does for what
the file protocol lacks). Watchers poll: each look lists the tree and reports
what appeared, changed or went since the previous look.
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
import shlex
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from corral.errors import FileOperationError
from corral.sandbox import AsyncSandbox
from corral.server.e2b import rpc
from corral.server.e2b.errors import ConnectErrorRoute, E2BError
from corral.server.e2b.identity import data_plane_sandbox, service_of
from corral.server.e2b.paths import absolute, entry_info, root_info
from corral.server.file_transfer import shell

router = APIRouter(prefix="/filesystem.Filesystem", route_class=ConnectErrorRoute, include_in_schema=False)

#: Deepest ListDir and most entries one listing or watcher look returns.
MAX_DEPTH = 32
MAX_ENTRIES = 100_000
#: Watchers one server keeps, and seconds between two looks of a streamed watch.
MAX_WATCHERS = 1024
WATCH_POLL_S = 0.2
#: Looks without news between two keepalive messages of a streamed watch.
KEEPALIVE_LOOKS = 50


async def stat_entry(sandbox: AsyncSandbox, path: str) -> dict:
    """EntryInfo of ``path`` (E2BError not_found if there is none)."""
    if path == "/":
        return root_info()
    parent, name = posixpath.split(path)
    try:
        entries = await sandbox.files.list(parent)
    except FileOperationError as exc:
        if exc.code in ("not_found", "not_directory"):
            raise E2BError(404, f"{path}: no such file or directory", "not_found") from None
        raise
    for entry in entries:
        if entry.name == name:
            return entry_info(parent, entry)
    raise E2BError(404, f"{path}: no such file or directory", "not_found")


async def walk(sandbox: AsyncSandbox, path: str, depth: int) -> list[dict]:
    """EntryInfos under ``path`` down to ``depth`` levels (directories first met first)."""
    found, level = [], [path]
    for _ in range(depth):
        below = []
        for directory in level:
            for entry in await sandbox.files.list(directory):
                info = entry_info(directory, entry)
                if entry.kind != "other":
                    found.append(info)
                if entry.kind == "dir":
                    below.append(info["path"])
                if len(found) > MAX_ENTRIES:
                    raise E2BError(400, f"{path}: more than {MAX_ENTRIES} entries", "resource_exhausted")
        level = below
    return found


async def _message_path(request: Request, name: str = "path") -> tuple[str, str | None, dict]:
    sandbox_id, owner = data_plane_sandbox(request)
    rpc.user_of(request)
    message = await rpc.read_message(request)
    return sandbox_id, owner, message | {"_path": absolute(rpc.field(message, name), name)}


def _missing(exc: FileOperationError, path: str) -> E2BError | FileOperationError:
    if exc.code in ("not_found", "not_directory"):
        return E2BError(404, f"{path}: no such file or directory", "not_found")
    return exc


@router.post("/Stat")
async def stat(request: Request) -> JSONResponse:
    """The entry of a path."""
    sandbox_id, owner, message = await _message_path(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        return JSONResponse({"entry": await stat_entry(sandbox, message["_path"])})


@router.post("/ListDir")
async def list_dir(request: Request) -> JSONResponse:
    """Entries of a directory, down to ``depth`` levels (0 is 1)."""
    sandbox_id, owner, message = await _message_path(request)
    depth = rpc.field(message, "depth", 1)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
        raise E2BError(400, f"depth must be 0 to {MAX_DEPTH}", "invalid_argument")
    path = message["_path"]
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        info = await stat_entry(sandbox, path)
        if info["type"] != "FILE_TYPE_DIRECTORY":
            raise E2BError(400, f"{path} is not a directory", "invalid_argument")
        try:
            return JSONResponse({"entries": await walk(sandbox, path, depth or 1)})
        except FileOperationError as exc:
            raise _missing(exc, path) from None


@router.post("/MakeDir")
async def make_dir(request: Request) -> JSONResponse:
    """Create a directory and its parents; already_exists if the path exists."""
    sandbox_id, owner, message = await _message_path(request)
    path = message["_path"]
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            await stat_entry(sandbox, path)
        except E2BError:
            pass
        else:
            raise E2BError(409, f"{path} already exists", "already_exists")
        await shell(sandbox, f"mkdir -p -- {shlex.quote(path)}")
        return JSONResponse({"entry": await stat_entry(sandbox, path)})


@router.post("/Move")
async def move(request: Request) -> JSONResponse:
    """Rename or move a file or directory."""
    sandbox_id, owner, message = await _message_path(request, "source")
    source = message["_path"]
    destination = absolute(rpc.field(message, "destination"), "destination")
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        await stat_entry(sandbox, source)
        await shell(sandbox, f"mkdir -p -- {shlex.quote(posixpath.dirname(destination))} && "
                             f"mv -fT -- {shlex.quote(source)} {shlex.quote(destination)}")
        return JSONResponse({"entry": await stat_entry(sandbox, destination)})


@router.post("/Remove")
async def remove(request: Request) -> JSONResponse:
    """Remove a file or a whole directory tree (a missing path is fine)."""
    sandbox_id, owner, message = await _message_path(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            await sandbox.files.remove(message["_path"], recursive=True)
        except FileOperationError as exc:
            if exc.code != "not_found":
                raise
    return JSONResponse({})


# --- watchers ------------------------------------------------------------------------


class Watcher:
    """A polled watch of a directory: each look reports the differences since the previous one."""

    def __init__(self, sandbox_id: str, path: str, recursive: bool, include_entry: bool):
        self.sandbox_id, self.path, self.recursive, self.include_entry = sandbox_id, path, recursive, include_entry
        self.seen: dict[str, dict] | None = None

    async def look(self, sandbox: AsyncSandbox) -> list[dict]:
        """FilesystemEvents since the previous look (none on the first, which only records the tree)."""
        try:
            now = {info["path"]: info for info in await walk(sandbox, self.path, MAX_DEPTH if self.recursive else 1)}
        except FileOperationError as exc:
            raise _missing(exc, self.path) from None
        before, self.seen = self.seen, now
        if before is None:
            return []
        events = []
        for path, info in now.items():
            old = before.get(path)
            kind = ("EVENT_TYPE_CREATE" if old is None else
                    "EVENT_TYPE_WRITE" if (old["size"], old["modifiedTime"]) != (info["size"], info["modifiedTime"])
                    else "EVENT_TYPE_CHMOD" if old["mode"] != info["mode"] else None)
            if kind is not None:
                events.append({"name": posixpath.relpath(path, self.path), "type": kind,
                               **({"entry": info} if self.include_entry else {})})
        events += [{"name": posixpath.relpath(path, self.path), "type": "EVENT_TYPE_REMOVE"}
                   for path in before if path not in now]
        return events


def _watchers(request: Request) -> dict[str, Watcher]:
    return request.app.state.e2b_watchers


async def _new_watcher(request: Request) -> tuple[Watcher, str | None]:
    sandbox_id, owner, message = await _message_path(request)
    recursive = rpc.field(message, "recursive", False)
    include = rpc.field(message, "includeEntry", False)
    if not isinstance(recursive, bool) or not isinstance(include, bool):
        raise E2BError(400, "recursive and includeEntry are booleans", "invalid_argument")
    watcher = Watcher(sandbox_id, message["_path"], recursive, include)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        if (await stat_entry(sandbox, watcher.path))["type"] != "FILE_TYPE_DIRECTORY":
            raise E2BError(400, f"{watcher.path} is not a directory", "invalid_argument")
        await watcher.look(sandbox)
    return watcher, owner


@router.post("/CreateWatcher")
async def create_watcher(request: Request) -> JSONResponse:
    """Start a polled watch; its events come from GetWatcherEvents."""
    watcher, _ = await _new_watcher(request)
    watchers = _watchers(request)
    if len(watchers) >= MAX_WATCHERS:
        raise E2BError(429, f"{MAX_WATCHERS} watchers exist on this server (the limit)", "resource_exhausted")
    watcher_id = secrets.token_hex(8)
    watchers[watcher_id] = watcher
    return JSONResponse({"watcherId": watcher_id})


def _watcher(request: Request, sandbox_id: str, message: dict) -> tuple[str, Watcher]:
    watcher_id = rpc.field(message, "watcherId")
    watcher = _watchers(request).get(watcher_id) if isinstance(watcher_id, str) else None
    if watcher is None or watcher.sandbox_id != sandbox_id:
        raise E2BError(404, f"watcher {watcher_id!r} not found", "not_found")
    return watcher_id, watcher


@router.post("/GetWatcherEvents")
async def get_watcher_events(request: Request) -> JSONResponse:
    """What changed since the previous call."""
    sandbox_id, owner = data_plane_sandbox(request)
    _, watcher = _watcher(request, sandbox_id, await rpc.read_message(request))
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        return JSONResponse({"events": await watcher.look(sandbox)})


@router.post("/RemoveWatcher")
async def remove_watcher(request: Request) -> JSONResponse:
    """Stop a watch."""
    sandbox_id, _ = data_plane_sandbox(request)
    watcher_id, _ = _watcher(request, sandbox_id, await rpc.read_message(request))
    _watchers(request).pop(watcher_id, None)
    return JSONResponse({})


@router.post("/WatchDir")
async def watch_dir(request: Request) -> Response:
    """A streamed watch: ``start`` first, then each event as a look finds it, keepalives in between."""
    watcher, owner = await _new_watcher(request)
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise E2BError(429, f"{slots.limit} streams are open on this server (the limit)", "resource_exhausted")

    async def messages() -> AsyncIterator[dict]:
        try:
            yield {"start": {}}
            quiet = 0
            while True:
                await asyncio.sleep(WATCH_POLL_S)
                async with service_of(request).use(watcher.sandbox_id, owner) as sandbox:
                    found = await watcher.look(sandbox)
                for event in found:
                    yield {"filesystem": event}
                quiet = 0 if found else quiet + 1
                if quiet >= KEEPALIVE_LOOKS:
                    quiet = 0
                    yield {"keepalive": {}}
        finally:
            slots.release()

    return rpc.stream(messages())
