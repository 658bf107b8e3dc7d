"""E2B's control plane (``/sandboxes``, ``/v2/sandboxes``): create, list, get, kill, timeout, pause, connect.

Each route turns E2B's request into a call of corral's sandbox or snapshot
service and the answer into E2B's JSON; E2B's ``timeout`` is corral's time to
live. Templates ``base`` and ``code-interpreter-v1`` are corral's ``python``
template unless the key built templates of those names.
"""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.contract.schemas import (
    DEFAULT_TTL_S,
    CreateSandbox,
    ResumeSnapshot,
    SandboxInfo,
)
from corral.contract.states import SandboxState
from corral.errors import LimitExceededError, NotFoundError
from corral.server.e2b.errors import E2BError, PlainErrorRoute
from corral.server.e2b.identity import current, owner_of, root, service_of

router = APIRouter(route_class=PlainErrorRoute, include_in_schema=False)

#: envd version reported: every process, file and upload feature this layer serves (E2B_COMPAT.md section 9).
ENVD_VERSION = "0.5.7"
#: E2B template names that exist on every server, and the corral template they start.
DEFAULT_TEMPLATES = {"base": "python", "code-interpreter-v1": "python"}
#: Metadata key that remembers the E2B template name a sandbox was created with (hidden from E2B answers).
TEMPLATE_KEY = "e2b.template"
CLIENT_ID = "corral"


class _Lenient(BaseModel):
    """E2B request bodies: unknown fields are ignored (the SDKs add fields often)."""

    model_config = ConfigDict(extra="ignore")


class CreateBody(_Lenient):
    """``POST /sandboxes``: the fields corral acts on."""

    templateID: str = Field(default="base", min_length=1, max_length=128)
    timeout: float = Field(default=DEFAULT_TTL_S)
    metadata: dict[str, str] | None = None
    envVars: dict[str, str] | None = None
    allow_internet_access: bool | None = None
    network: dict | None = None
    volumeMounts: list | None = None
    mcp: dict | None = None

    def unsupported(self) -> str | None:
        """What this request asks for that corral's E2B layer cannot give (refused, not ignored)."""
        if self.allow_internet_access:
            return ("allow_internet_access: sandboxes made through E2B's API have no network; "
                    "use corral's own API (network=) for egress")
        if self.network and (self.network.get("allowOut") or self.network.get("allowPublicTraffic")):
            return "network.allowOut / allowPublicTraffic: sandboxes made through E2B's API have no network"
        if self.volumeMounts:
            return "volumeMounts are not supported"
        if self.mcp:
            return "mcp is not supported"
        return None


class TimeoutBody(_Lenient):
    """``{"timeout": seconds}`` of set_timeout and connect."""

    timeout: float = Field(default=DEFAULT_TTL_S)


def _parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise E2BError(400, problems) from None


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    if not raw.strip():
        return _parse(model, {})
    try:
        data = json.loads(raw)
    except ValueError:
        raise E2BError(400, "the request body is not JSON") from None
    return _parse(model, data)


def _template(request: Request, owner: str, name: str) -> str:
    try:
        service_of(request).templates.resolve(owner, name)
        return name
    except NotFoundError:
        if name in DEFAULT_TEMPLATES:
            return DEFAULT_TEMPLATES[name]
        raise


def _iso(seconds: float | None) -> str:
    moment = datetime.datetime.fromtimestamp(seconds or 0, datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def _e2b_template(info: SandboxInfo) -> str:
    return info.metadata.get(TEMPLATE_KEY, info.template)


def _user_metadata(info: SandboxInfo) -> dict[str, str]:
    return {key: value for key, value in info.metadata.items() if key != TEMPLATE_KEY}


def _listed(request: Request, info: SandboxInfo) -> dict:
    return {
        "templateID": _e2b_template(info), "sandboxID": root(service_of(request), info), "clientID": CLIENT_ID,
        "startedAt": _iso(info.created_at), "endAt": _iso(info.expires_at), "cpuCount": 1, "memoryMB": 512,
        "diskSizeMB": 1024, "state": "paused" if info.state is SandboxState.PAUSED else "running",
        "envdVersion": ENVD_VERSION, "metadata": _user_metadata(info),
    }


def _created(request: Request, info: SandboxInfo, token: str) -> dict:
    return {"templateID": _e2b_template(info), "sandboxID": root(service_of(request), info), "clientID": CLIENT_ID,
            "envdVersion": ENVD_VERSION, "envdAccessToken": token, "domain": None}


@router.post("/sandboxes")
@router.post("/v2/sandboxes")
async def create(request: Request) -> JSONResponse:
    """Start a sandbox; 201 with its id and its per-sandbox access token."""
    owner = owner_of(request)
    body = await _body(request, CreateBody)
    if body.unsupported():
        raise E2BError(400, body.unsupported())
    metadata = {**(body.metadata or {}), TEMPLATE_KEY: body.templateID}
    try:
        spec = CreateSandbox(template=_template(request, owner, body.templateID), timeout=body.timeout,
                             metadata=metadata, env=body.envVars or {})
    except ValidationError as exc:
        raise E2BError(400, "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                      for e in exc.errors())) from None
    try:
        created, _ = await service_of(request).create(owner, spec)
    except LimitExceededError as exc:  # the key's quota: retrying at once cannot help, so the SDK should not
        raise E2BError(429, str(exc), headers={"Should-Retry": "false"}) from None
    return JSONResponse(_created(request, created, created.access_token), status_code=201)


@router.get("/sandboxes")
@router.get("/v2/sandboxes")
async def list_sandboxes(request: Request) -> JSONResponse:
    """The key's running and paused sandboxes, newest first, filtered and paged as E2B does."""
    owner = owner_of(request)
    query = request.query_params
    wanted = _metadata_filter(query.get("metadata"))
    states = {part for part in query.get("state", "running,paused").split(",") if part}
    if not states <= {"running", "paused"}:
        raise E2BError(400, f"state: {query.get('state')!r}; use running, paused or both")
    try:
        limit = int(query.get("limit", "100"))
        start = int(base64.urlsafe_b64decode(query["nextToken"]).decode()) if query.get("nextToken") else 0
    except (ValueError, UnicodeDecodeError):
        raise E2BError(400, "limit and nextToken must be the values the server gave") from None
    if not 1 <= limit <= 10000 or start < 0:
        raise E2BError(400, "limit must be 1 to 10000")
    service = service_of(request)
    found = [info for info in service.list(owner)
             if info.state.value in states and _matches(info, wanted)
             and query.get("template") in (None, _e2b_template(info))]
    if query.get("order") == "asc":
        found.reverse()
    page = found[start:start + limit]
    headers = {}
    if start + limit < len(found):
        headers["x-next-token"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return JSONResponse([_listed(request, info) for info in page], headers=headers)


def _metadata_filter(raw: str | None) -> dict[str, str]:
    """E2B's ``metadata`` parameter: ``k=v&k2=v2`` whose keys and values are percent-encoded once more."""
    if not raw:
        return {}
    return {urllib.parse.unquote(key): urllib.parse.unquote(value)
            for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True)}


def _matches(info: SandboxInfo, wanted: dict[str, str]) -> bool:
    return all(_user_metadata(info).get(key) == value for key, value in wanted.items())


@router.get("/sandboxes/{sandbox_id}")
async def get_sandbox(sandbox_id: str, request: Request) -> JSONResponse:
    """SandboxDetail of a running or paused sandbox (404 otherwise)."""
    info = _live(request, sandbox_id, owner_of(request))
    return JSONResponse(_listed(request, info) | {"domain": None})


def _live(request: Request, sandbox_id: str, owner: str) -> SandboxInfo:
    try:
        info = current(service_of(request), sandbox_id, owner)
    except NotFoundError:
        raise E2BError(404, f"sandbox {sandbox_id} not found") from None
    if info.state not in (SandboxState.RUNNING, SandboxState.PAUSED, SandboxState.CREATING):
        raise E2BError(404, f"sandbox {sandbox_id} not found ({info.state.value})")
    return info


@router.delete("/sandboxes/{sandbox_id}")
async def kill(sandbox_id: str, request: Request) -> Response:
    """Kill a sandbox: 204, or 404 if it is not running or paused."""
    owner = owner_of(request)
    info = _live(request, sandbox_id, owner)
    await service_of(request).kill(info.id, owner)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/timeout")
async def set_timeout(sandbox_id: str, request: Request) -> Response:
    """The sandbox now expires ``timeout`` seconds from now."""
    owner = owner_of(request)
    body = await _body(request, TimeoutBody)
    info = _live(request, sandbox_id, owner)
    _check_ttl(body.timeout)
    service_of(request).set_timeout(info.id, owner, body.timeout)
    return Response(status_code=204)


def _check_ttl(seconds: float) -> None:
    try:
        ResumeSnapshot(timeout=seconds)
    except ValidationError as exc:
        raise E2BError(400, f"timeout: {exc.errors()[0]['msg']}") from None


@router.post("/sandboxes/{sandbox_id}/pause")
async def pause(sandbox_id: str, request: Request) -> Response:
    """Pause: corral captures the sandbox's files into a snapshot and stops it (409 if not running)."""
    owner = owner_of(request)
    info = _live(request, sandbox_id, owner)
    if info.state is not SandboxState.RUNNING:
        raise E2BError(409, f"sandbox {sandbox_id} is {info.state.value}")
    await request.app.state.snapshots.pause(info.id, owner)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/connect")
@router.post("/v2/sandboxes/{sandbox_id}/connect")
async def connect(sandbox_id: str, request: Request) -> JSONResponse:
    """Extend a running sandbox's time to live (200), or resume a paused one under the same id (201)."""
    owner = owner_of(request)
    body = await _body(request, TimeoutBody)
    _check_ttl(body.timeout)
    info = _live(request, sandbox_id, owner)
    if info.state is SandboxState.PAUSED:
        resumed = await request.app.state.snapshots.resume(info.snapshot_id, owner,
                                                            ResumeSnapshot(timeout=body.timeout))
        return JSONResponse(_created(request, resumed, resumed.access_token), status_code=201)
    service_of(request).set_timeout(info.id, owner, body.timeout)
    # the running sandbox's token was shown once, to its creator: the caller proved it holds the
    # API key, which the data plane accepts for the key's own sandboxes
    return JSONResponse(_created(request, info, request.headers["x-api-key"]), status_code=200)


@router.post("/sandboxes/{sandbox_id}/resume")
async def resume(sandbox_id: str, request: Request) -> JSONResponse:
    """Older SDKs' resume: 201 for a paused sandbox, 409 for a running one."""
    owner = owner_of(request)
    body = await _body(request, TimeoutBody)
    _check_ttl(body.timeout)
    info = _live(request, sandbox_id, owner)
    if info.state is not SandboxState.PAUSED:
        raise E2BError(409, f"sandbox {sandbox_id} is {info.state.value}, not paused")
    resumed = await request.app.state.snapshots.resume(info.snapshot_id, owner, ResumeSnapshot(timeout=body.timeout))
    return JSONResponse(_created(request, resumed, resumed.access_token), status_code=201)


@router.get("/sandboxes/{sandbox_id}/metrics")
@router.get("/sandboxes/metrics")
async def metrics(request: Request) -> Response:
    """Refused (501): corral does not sample a sandbox's CPU, memory and disk over time."""
    owner_of(request)
    raise E2BError(501, "corral does not record sandbox metrics over time; each run's result has its "
                        "cpu_time_ms and memory_peak_mb (corral's own API)")
