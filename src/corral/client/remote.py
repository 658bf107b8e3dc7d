"""Remote mode: hosted-sandbox calls over HTTP to a corral server, with safe retries only.

Error answers become the corral exception they name (an answer without corral's error
body, e.g. a proxy's, the class its status means in :mod:`corral.contract.errors`). Retries follow
``docs/errors.md``: a call is retried (with backoff) only when nothing can
have run: the connection could not be opened, or the server answered with a
TransientError (sandbox start failed, a limit is reached). A connection that
breaks after the request was sent is retried only for idempotent calls (GET,
PUT of a file, DELETE); otherwise it is an OutcomeUnknownError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import httpx

from corral.client.terminal import AsyncHostedTerminal, RemoteTerminal
from corral.client.transport import ProgressCallback, Transport
from corral.contract.errors import error_for_status, rebuild
from corral.contract.schemas import (
    CommandRequest,
    CreatedSandbox,
    CreateSandbox,
    ListedFile,
    LogEvent,
    ResumeSnapshot,
    RunRequest,
    SandboxInfo,
    SnapshotInfo,
    TemplateDefinition,
    TemplateInfo,
)
from corral.contract.states import SandboxState
from corral.errors import (
    CorralError,
    InvalidInputError,
    OutcomeUnknownError,
    PermanentError,
    ProtocolError,
    TransientError,
)
from corral.models import (
    BackgroundCommand,
    ExecutionResult,
    FileEntry,
    FileInfo,
    OutputEvent,
    ProcessInfo,
)
from corral.sync_bridge import bridge

#: Attempts of a call that may be retried, and the first backoff (doubled each time).
ATTEMPTS = 4
BACKOFF_S = 0.2
#: Time to open a connection and to wait for an answer that is not a run (runs wait as long as they take).
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
#: Idle pooled connections are dropped before the server's keep-alive timeout (uvicorn: 5 s) ends them,
#: so a request never goes out on a connection the server is closing.
KEEPALIVE_S = 4.0
#: The keep-alive client of the sync API's loop, with that loop.
_pooled: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context for every client (building one costs ~35 ms; a client with it ~0.1 ms)."""
    return ssl.create_default_context()


class RemoteTransport(Transport):
    """Calls to the corral server at ``server`` with an API key or a sandbox access token.

    Calls from the synchronous API share one pool of keep-alive connections on
    corral's own loop (it lives as long as the program). Calls from another event
    loop use a client of their own per call, so nothing is left open on a loop
    that may end: a transport never needs closing.
    """

    def __init__(self, server: str, credential: str | None):
        if not server.startswith(("http://", "https://")):
            raise InvalidInputError(f"server must be an http:// or https:// URL, got {server!r}")
        if not credential:
            raise InvalidInputError("a corral server needs credentials: pass api_key= (or set CORRAL_API_KEY), "
                                    "or access_token= for one sandbox")
        self._base_url = server.rstrip("/") + "/v1"
        self._headers = {"Authorization": f"Bearer {credential}"}

    @contextlib.asynccontextmanager
    async def _session(self):
        """A client for one call: the shared pool on corral's loop, else a fresh one closed afterwards."""
        global _pooled
        if bridge.owns_running_loop():  # the sync API's loop
            if _pooled is None or _pooled[0] is not asyncio.get_running_loop():  # none yet, or a forked parent's
                _pooled = (asyncio.get_running_loop(), _new_client())
            yield _pooled[1]
        else:
            async with _new_client() as client:
                yield client

    def _url(self, path: str) -> str:
        return self._base_url + path

    async def _call(self, method: str, path: str, *, json_body: Any = None, params: Any = None,
                    content: bytes | None = None, timeout: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        for attempt in range(ATTEMPTS):
            try:
                async with self._session() as client:
                    response = await client.request(method, self._url(path), json=json_body, params=params,
                                                    content=content, headers=self._headers, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error: CorralError = TransientError(f"cannot reach the corral server: {exc}")
                error.__cause__ = exc
            except httpx.TransportError as exc:
                if method not in _IDEMPOTENT:
                    raise OutcomeUnknownError(f"the connection to the corral server broke during {method} {path}; "
                                              f"it may or may not have run: {exc}") from exc
                error = TransientError(f"the connection to the corral server broke: {exc}")
                error.__cause__ = exc
            else:
                if response.is_success:
                    return response
                error = _error(response.status_code, response.content)
                if not isinstance(error, TransientError):
                    raise error
            if attempt + 1 == ATTEMPTS:
                raise error
            await asyncio.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    async def create(self, request: CreateSandbox) -> CreatedSandbox:
        response = await self._call("POST", "/sandboxes", json_body=request.model_dump(mode="json", exclude_unset=True))
        return CreatedSandbox.model_validate_json(response.content)

    async def get(self, sandbox_id: str) -> SandboxInfo:
        return SandboxInfo.model_validate_json((await self._call("GET", f"/sandboxes/{sandbox_id}")).content)

    async def list(self, metadata: dict[str, str], state: SandboxState | None) -> list[SandboxInfo]:
        params = [("metadata", f"{key}={value}") for key, value in metadata.items()]
        if state is not None:
            params.append(("state", SandboxState(state).value))
        response = await self._call("GET", "/sandboxes", params=params)
        return [SandboxInfo.model_validate(item) for item in response.json()]

    async def kill(self, sandbox_id: str) -> SandboxInfo:
        return SandboxInfo.model_validate_json((await self._call("DELETE", f"/sandboxes/{sandbox_id}")).content)

    async def set_timeout(self, sandbox_id: str, seconds: float) -> SandboxInfo:
        response = await self._call("POST", f"/sandboxes/{sandbox_id}/timeout", json_body={"timeout": seconds})
        return SandboxInfo.model_validate_json(response.content)

    async def events(self, sandbox_id: str) -> list[LogEvent]:
        response = await self._call("GET", f"/sandboxes/{sandbox_id}/events")
        return [LogEvent.model_validate(item) for item in response.json()]

    async def execute(self, sandbox_id: str, request: RunRequest | CommandRequest) -> ExecutionResult | BackgroundCommand:
        path = f"/sandboxes/{sandbox_id}/{'runs' if isinstance(request, RunRequest) else 'commands'}"
        response = await self._call("POST", path, json_body=request.model_dump(mode="json", exclude_defaults=True),
                                    timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S))
        data = response.json()
        return BackgroundCommand.model_validate(data) if "log_path" in data else ExecutionResult.model_validate(data)

    async def stream(self, sandbox_id: str,
                     request: RunRequest | CommandRequest) -> AsyncIterator[OutputEvent | ExecutionResult]:
        path = f"/sandboxes/{sandbox_id}/{'runs' if isinstance(request, RunRequest) else 'commands'}"
        body = {**request.model_dump(mode="json", exclude_defaults=True), "stream": True}
        try:
            async with self._session() as client, client.stream(
                    "POST", self._url(path), json=body, headers=self._headers,
                    timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)) as response:
                if not response.is_success:
                    raise _error(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if line:
                        yield _event(line)
                        if '"type":"result"' in line:
                            return
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientError(f"cannot reach the corral server: {exc}") from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknownError(f"the stream from the corral server broke; the run may have finished: {exc}") from exc
        raise OutcomeUnknownError("the stream from the corral server ended without a result")

    async def write_file(self, sandbox_id: str, path: str, data: bytes, mode: int) -> int:
        response = await self._call("PUT", _files_route(sandbox_id, "", path, mode=mode), content=data)
        return response.json()["size"]

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        return (await self._call("GET", _files_route(sandbox_id, "", path))).content

    async def list_files(self, sandbox_id: str, path: str) -> list[FileEntry]:
        response = await self._call("GET", _files_route(sandbox_id, "/list", path))
        return [ListedFile.model_validate(item).entry() for item in response.json()]

    async def remove_file(self, sandbox_id: str, path: str, recursive: bool) -> None:
        await self._call("DELETE", _files_route(sandbox_id, "", path, recursive="true" if recursive else "false"))

    async def stat_file(self, sandbox_id: str, path: str) -> FileInfo:
        return FileInfo.model_validate_json((await self._call("GET", _files_route(sandbox_id, "/stat", path))).content)

    async def make_dir(self, sandbox_id: str, path: str, parents: bool) -> FileInfo:
        route = _files_route(sandbox_id, "/dir", path, parents="true" if parents else "false")
        return FileInfo.model_validate_json((await self._call("POST", route)).content)

    async def rename_file(self, sandbox_id: str, source: str, destination: str) -> FileInfo:
        response = await self._call("POST", f"/sandboxes/{sandbox_id}/files/rename",
                                    json_body={"source": source, "destination": destination})
        return FileInfo.model_validate_json(response.content)

    async def list_processes(self, sandbox_id: str) -> list[ProcessInfo]:
        response = await self._call("GET", f"/sandboxes/{sandbox_id}/processes")
        return [ProcessInfo.model_validate(item) for item in response.json()]

    async def signal_process(self, sandbox_id: str, pid: int, signal: str) -> bool:
        response = await self._call("POST", f"/sandboxes/{sandbox_id}/processes/{int(pid)}/signal",
                                    json_body={"signal": signal})
        return bool(response.json()["signalled"])

    async def send_stdin(self, sandbox_id: str, pid: int, data: bytes) -> None:
        await self._call("POST", f"/sandboxes/{sandbox_id}/processes/{int(pid)}/stdin", content=data)

    async def close_stdin(self, sandbox_id: str, pid: int) -> None:
        await self._call("POST", f"/sandboxes/{sandbox_id}/processes/{int(pid)}/stdin/close")

    async def pause(self, sandbox_id: str) -> SnapshotInfo:
        return SnapshotInfo.model_validate_json((await self._call("POST", f"/sandboxes/{sandbox_id}/pause")).content)

    async def resume(self, snapshot_id: str, request: ResumeSnapshot) -> CreatedSandbox:
        response = await self._call("POST", f"/snapshots/{snapshot_id}/resume",
                                    json_body=request.model_dump(mode="json", exclude_unset=True))
        return CreatedSandbox.model_validate_json(response.content)

    async def build_template(self, definition: TemplateDefinition, on_progress: ProgressCallback) -> TemplateInfo:
        try:
            async with self._session() as client, client.stream(
                    "POST", self._url("/templates"), params={"progress": "true"}, headers=self._headers,
                    json=definition.model_dump(mode="json"),
                    timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)) as response:
                if not response.is_success:
                    raise _error(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if item["type"] == "progress":
                        on_progress(item["step"], item["total"], item["message"])
                    elif item["type"] == "template":
                        return TemplateInfo.model_validate(item["template"])
                    else:
                        raise rebuild(item["error"]["type"], item["error"]["message"], item["error"].get("code"))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientError(f"cannot reach the corral server: {exc}") from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknownError(f"the build's progress stream broke; the template may be built: {exc}") from exc
        raise OutcomeUnknownError("the build's progress stream ended without a template")

    async def open_terminal(self, sandbox_id: str, cols: int, rows: int, command: str | None) -> AsyncHostedTerminal:
        try:
            from websockets.asyncio.client import connect  # noqa: PLC0415 - optional: the server extra has it
        except ImportError:
            raise PermanentError("a terminal on a corral server needs the websockets package: "
                                 "pip install 'corral[server]'") from None
        query = urllib.parse.urlencode({"cols": cols, "rows": rows, **({"command": command} if command else {})})
        url = "ws" + self._base_url[len("http"):] + f"/sandboxes/{sandbox_id}/pty?{query}"
        try:
            websocket = await connect(url, additional_headers=self._headers,
                                      ssl=_tls() if url.startswith("wss://") else None)
        except OSError as exc:
            raise TransientError(f"cannot reach the corral server: {exc}") from exc
        return RemoteTerminal(websocket)

    async def close(self) -> None:
        """Nothing to release: every call closes its own connection."""


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=_tls(), timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                             limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S))


def _error(status: int, content: bytes) -> CorralError:
    try:
        detail = json.loads(content)["error"]
        return rebuild(detail["type"], detail["message"], detail.get("code"))
    except (ValueError, KeyError, TypeError):
        text = content[:300].decode("utf-8", "replace")
        return error_for_status(status)(f"HTTP {status} from the server: {text}")


def _event(line: str) -> OutputEvent | ExecutionResult:
    try:
        item = json.loads(line)
        kind = item["type"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"the server sent a line that is not an event: {line[:200]!r}") from exc
    if kind == "output":
        return OutputEvent(stream=item["stream"], data=item["data"])
    if kind == "result":
        return ExecutionResult.model_validate(item["result"])
    if kind == "error":
        raise rebuild(item["error"]["type"], item["error"]["message"], item["error"].get("code"))
    raise ProtocolError(f"unknown event type {kind!r} from the server")


def _files_route(sandbox_id: str, suffix: str, path: str, **params: object) -> str:
    """A file route with its query. ``path`` goes as its bytes: a name that is not UTF-8, in Python's
    surrogateescape form (as ``files.list`` gives it), reaches exactly that file."""
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidInputError(f"path {path!r} is not valid Unicode (a lone surrogate no byte stands for)") from None
    return f"/sandboxes/{sandbox_id}/files{suffix}?{urllib.parse.urlencode({'path': raw, **params})}"
