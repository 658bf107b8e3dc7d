"""envd's ``filesystem.Filesystem`` Connect service over corral's file API.

Watchers are corral's directory watches (inotify in the sandbox): the sync
SDK's CreateWatcher / GetWatcherEvents / RemoveWatcher keep one on the server
between calls; the async SDK's WatchDir streams one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from corral.errors import FileOperationError
from corral.file_watch import AsyncFileWatch
from corral.sandbox import AsyncSandbox
from corral.server.e2b import rpc
from corral.server.e2b.errors import ConnectErrorRoute, E2BError
from corral.server.e2b.identity import data_plane_sandbox, service_of
from corral.server.e2b.paths import absolute, entry_info, stat_info

router = APIRouter(prefix="/filesystem.Filesystem", route_class=ConnectErrorRoute, include_in_schema=False)

#: Deepest ListDir and most entries one listing returns.
MAX_DEPTH = 32
MAX_ENTRIES = 100_000
#: Watchers kept between calls on one server.
MAX_WATCHERS = 1024
#: Seconds of silence between two keepalive messages of a streamed watch.
KEEPALIVE_S = 50.0
#: corral's file event kinds -> envd's event types (``overflow`` has none: lost events are just lost).
EVENT_TYPES = {"create": "EVENT_TYPE_CREATE", "write": "EVENT_TYPE_WRITE", "remove": "EVENT_TYPE_REMOVE",
               "rename": "EVENT_TYPE_RENAME", "chmod": "EVENT_TYPE_CHMOD"}


def _missing(exc: FileOperationError, path: str) -> Exception:
    if exc.missing:
        return E2BError(404, f"{path}: no such file or directory", "not_found")
    return exc


async def stat_entry(sandbox: AsyncSandbox, path: str) -> dict:
    """EntryInfo of ``path`` (E2BError not_found if there is none)."""
    try:
        return stat_info(await sandbox.files.stat(path))
    except FileOperationError as exc:
        raise _missing(exc, path) from None


async def walk(sandbox: AsyncSandbox, path: str, depth: int) -> list[dict]:
    """EntryInfos under ``path`` down to ``depth`` levels."""
    found, level = [], [path]
    for _ in range(depth):
        below = []
        for directory in level:
            for entry in await sandbox.files.list(directory):
                info = entry_info(directory, entry)
                if entry.kind != "other":  # envd lists files, directories and symlinks only
                    found.append(info)
                if entry.kind == "dir":
                    below.append(info["path"])
                if len(found) > MAX_ENTRIES:
                    raise E2BError(400, f"{path}: more than {MAX_ENTRIES} entries", "resource_exhausted")
        level = below
    return found


async def _request(request: Request, name: str = "path") -> tuple[str, str | None, dict, str]:
    sandbox_id, owner = data_plane_sandbox(request)
    rpc.user_of(request)
    message = await rpc.read_message(request)
    return sandbox_id, owner, message, absolute(rpc.field(message, name), name)


@router.post("/Stat")
async def stat(request: Request) -> JSONResponse:
    """The entry of a path."""
    sandbox_id, owner, _, path = await _request(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        return JSONResponse({"entry": await stat_entry(sandbox, path)})


@router.post("/ListDir")
async def list_dir(request: Request) -> JSONResponse:
    """Entries of a directory, down to ``depth`` levels (0 is 1)."""
    sandbox_id, owner, message, path = await _request(request)
    depth = rpc.field(message, "depth", 1)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
        raise E2BError(400, f"depth must be 0 to {MAX_DEPTH}", "invalid_argument")
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        if (await stat_entry(sandbox, path))["type"] != "FILE_TYPE_DIRECTORY":
            raise E2BError(400, f"{path} is not a directory", "invalid_argument")
        try:
            return JSONResponse({"entries": await walk(sandbox, path, depth or 1)})
        except FileOperationError as exc:
            raise _missing(exc, path) from None


@router.post("/MakeDir")
async def make_dir(request: Request) -> JSONResponse:
    """Create a directory and its parents; already_exists if the path exists."""
    sandbox_id, owner, _, path = await _request(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            return JSONResponse({"entry": stat_info(await sandbox.files.make_dir(path, parents=True))})
        except FileOperationError as exc:
            if exc.code == "exists":
                raise E2BError(409, f"{path} already exists", "already_exists") from None
            raise _missing(exc, path) from None


@router.post("/Move")
async def move(request: Request) -> JSONResponse:
    """Rename or move a file or directory (a file at the destination is replaced)."""
    sandbox_id, owner, message, source = await _request(request, "source")
    destination = absolute(rpc.field(message, "destination"), "destination")
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            return JSONResponse({"entry": stat_info(await sandbox.files.rename(source, destination))})
        except FileOperationError as exc:
            raise _missing(exc, source) from None


@router.post("/Remove")
async def remove(request: Request) -> JSONResponse:
    """Remove a file or a whole directory tree (a missing path is fine)."""
    sandbox_id, owner, _, path = await _request(request)
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        try:
            await sandbox.files.remove(path, recursive=True)
        except FileOperationError as exc:
            if exc.code != "not_found":
                raise
    return JSONResponse({})


# --- watchers ------------------------------------------------------------------------


@dataclass
class Watcher:
    """A corral watch kept between calls, and the sandbox it belongs to."""

    sandbox_id: str
    watch: AsyncFileWatch


def _event(event) -> dict | None:
    kind = EVENT_TYPES.get(event.kind)
    return None if kind is None else {"name": event.name, "type": kind}


async def _watch(request: Request) -> tuple[str, AsyncFileWatch]:
    sandbox_id, owner, message, path = await _request(request)
    recursive = rpc.field(message, "recursive", False)
    if not isinstance(recursive, bool):
        raise E2BError(400, "recursive is a boolean", "invalid_argument")
    async with service_of(request).use(sandbox_id, owner) as sandbox:
        if (await stat_entry(sandbox, path))["type"] != "FILE_TYPE_DIRECTORY":
            raise E2BError(400, f"{path} is not a directory", "invalid_argument")
        return sandbox_id, await sandbox.files.watch(path, recursive=recursive)


def _watchers(request: Request) -> dict[str, Watcher]:
    return request.app.state.e2b_watchers


@router.post("/CreateWatcher")
async def create_watcher(request: Request) -> JSONResponse:
    """Start a watch kept on the server; its events come from GetWatcherEvents."""
    watchers = _watchers(request)
    live = request.app.state.service.live
    for watcher_id, watcher in list(watchers.items()):  # watches of sandboxes that are gone go first
        if watcher.sandbox_id not in live:
            watchers.pop(watcher_id, None)
            await watcher.watch.close()
    if len(watchers) >= MAX_WATCHERS:
        raise E2BError(429, f"{MAX_WATCHERS} watchers exist on this server (the limit)", "resource_exhausted")
    sandbox_id, watch = await _watch(request)
    watcher_id = secrets.token_hex(8)
    watchers[watcher_id] = Watcher(sandbox_id, watch)
    return JSONResponse({"watcherId": watcher_id})


def _watcher(request: Request, sandbox_id: str, message: dict) -> tuple[str, Watcher]:
    watcher_id = rpc.field(message, "watcherId")
    watcher = _watchers(request).get(watcher_id) if isinstance(watcher_id, str) else None
    if watcher is None or watcher.sandbox_id != sandbox_id:
        raise E2BError(404, f"watcher {str(watcher_id)[:64]!r} not found", "not_found")
    return watcher_id, watcher


@router.post("/GetWatcherEvents")
async def get_watcher_events(request: Request) -> JSONResponse:
    """The events since the previous call."""
    sandbox_id, _ = data_plane_sandbox(request)
    _, watcher = _watcher(request, sandbox_id, await rpc.read_message(request))
    found = [_event(event) for event in watcher.watch.pending()]
    return JSONResponse({"events": [event for event in found if event is not None]})


@router.post("/RemoveWatcher")
async def remove_watcher(request: Request) -> JSONResponse:
    """Stop a watch."""
    sandbox_id, _ = data_plane_sandbox(request)
    watcher_id, watcher = _watcher(request, sandbox_id, await rpc.read_message(request))
    _watchers(request).pop(watcher_id, None)
    await watcher.watch.close()
    return JSONResponse({})


@router.post("/WatchDir")
async def watch_dir(request: Request) -> Response:
    """A streamed watch: ``start`` first, then each event as it comes, keepalives in between."""
    slots = request.app.state.streams
    if not slots.try_acquire():
        raise E2BError(429, f"{slots.limit} streams are open on this server (the limit)", "resource_exhausted")
    try:
        _, watch = await _watch(request)
    except BaseException:
        slots.release()
        raise
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in watch:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(None)

    pumping = asyncio.ensure_future(pump())

    async def messages() -> AsyncIterator[dict]:
        try:
            yield {"start": {}}
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield {"keepalive": {}}
                    continue
                if event is None:
                    return
                shown = _event(event)
                if shown is not None:
                    yield {"filesystem": shown}
        finally:
            slots.release()
            await watch.close()
            pumping.cancel()
            with contextlib.suppress(BaseException):
                await pumping

    return rpc.stream(messages())
