"""The FastAPI application: routes under ``/v1``, error translation, limits, metrics.

Every error answer is an :class:`ErrorBody`; corral errors keep their class
name in ``error.type`` (see :mod:`corral.contract.errors`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

import corral
from corral.contract.errors import error_for_status, status_of, type_name_of
from corral.contract.schemas import ErrorBody, ErrorDetail
from corral.errors import CorralError, InvalidInputError
from corral.hosted.service import SandboxService, ServiceConfig
from corral.hosted.snapshots import SnapshotService
from corral.protocol import wire
from corral.server import e2b
from corral.server.auth import api_key
from corral.server.batch import BatchConfig, BatchService
from corral.server.json_answers import UnicodeSafeJSON
from corral.server.limits import BodyLimit, StreamSlots
from corral.server.metrics import Metrics, RequestMetrics
from corral.server.routes import (
    batch,
    execution,
    files,
    ops,
    processes,
    sandbox_fusion,
    sandboxes,
    snapshots,
    templates,
    terminal,
)
from corral.server.routes.common import reject_unknown_query

log = logging.getLogger("corral.server")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``corral serve`` can set."""

    data_dir: Path
    max_sandboxes_per_key: int = 20
    max_streams: int = 64
    #: Largest request body but a file upload (a run's code and stdin fit).
    max_body_bytes: int = wire.MAX_FILE_BYTES + 64 * 1024
    #: Largest file upload (streamed into the sandbox in chunks; its disk is the real bound).
    max_file_bytes: int = 512 * 1024 * 1024
    reap_interval_s: float = 1.0
    isolation: str = "auto"
    warm_per_template: int = 0
    blob_grace_s: float = 3600.0
    #: On shutdown, pause running sandboxes (their files survive as snapshots) instead of killing them.
    pause_on_shutdown: bool = False
    #: Batch items (``/v1/batch``, ``/run_code``) one key runs at once.
    batch_runs_per_key: int = 8
    #: Let SandboxFusion's ``/run_code`` run without credentials (``corral serve`` allows it on loopback only).
    sandbox_fusion_no_auth: bool = False
    #: Serve /metrics without credentials (by default it needs an API key, like the control plane).
    public_metrics: bool = False
    #: A Ray cluster's address: sandboxes start on its nodes that advertise corral_host (docs/cluster.md).
    ray_address: str | None = None
    service: ServiceConfig = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "service", ServiceConfig(
            self.data_dir, max_sandboxes_per_owner=self.max_sandboxes_per_key,
            reap_interval_s=self.reap_interval_s, isolation=self.isolation, warm_per_template=self.warm_per_template,
            blob_grace_s=self.blob_grace_s,
        ))


def create_app(config: ServerConfig) -> FastAPI:
    """A ready-to-serve app; the service starts (and recovers) in its lifespan."""
    service_config = config.service
    if config.ray_address is not None:
        from corral.cluster.served import ClusterSandboxes  # noqa: PLC0415 - the ray extra, for cluster mode only

        service_config = dataclasses.replace(service_config,
                                             sandboxes=ClusterSandboxes(config.ray_address, config.isolation))
    service = SandboxService(service_config)
    snapshots_service = SnapshotService(service)
    streams = StreamSlots(config.max_streams)
    batches = BatchService(BatchConfig(isolation=config.isolation, runs_per_key=config.batch_runs_per_key))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            if config.pause_on_shutdown:
                await _pause_all(snapshots_service)
            await batches.close()
            await service.close()

    app = FastAPI(title="corral", version=corral.__version__, lifespan=lifespan, default_response_class=UnicodeSafeJSON,
                  description="Sandboxes as a service: run untrusted code, keep files, pause and resume.")
    app.state.service = service
    app.state.snapshots = snapshots_service
    app.state.streams = streams
    app.state.batch = batches
    app.state.sandbox_fusion_open = config.sandbox_fusion_no_auth
    app.state.max_file_bytes = config.max_file_bytes
    app.state.metrics = Metrics(service, streams)
    for module in (sandboxes, execution, files, processes, snapshots, templates, batch, ops):
        app.include_router(module.router, prefix="/v1", dependencies=[Depends(reject_unknown_query)])
    app.include_router(terminal.router, prefix="/v1")
    metrics_guard = [] if config.public_metrics else [Depends(api_key)]
    app.include_router(ops.metrics_router, dependencies=[Depends(reject_unknown_query), *metrics_guard])
    app.include_router(sandbox_fusion.router)
    e2b.install(app)  # E2B's SDKs, at the root (docs/e2b.md)
    _add_error_handlers(app)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, upload_bytes=config.max_file_bytes)
    return app


async def _pause_all(snapshots: SnapshotService) -> None:
    """Pause every running sandbox; one that cannot be paused is killed with the rest."""
    for sandbox_id in list(snapshots.service.live):
        try:
            snapshot = await snapshots.pause(sandbox_id, None)
        except CorralError as exc:
            log.warning("could not pause %s at shutdown (it is killed): %s", sandbox_id, exc)
        else:
            log.info("paused %s into %s at shutdown", sandbox_id, snapshot.id)


def _error(status: int, type_name: str, message: str, code: str | None = None, headers=None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(type=type_name, message=message, code=code))
    return UnicodeSafeJSON(body.model_dump(), status_code=status, headers=headers)


def _answer(exc: CorralError) -> JSONResponse:
    """A corral error's answer: its status from the one table, its class name, message and code."""
    return _error(status_of(exc), type_name_of(exc), str(exc), getattr(exc, "code", None))


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CorralError)
    async def corral_error(request: Request, exc: CorralError) -> JSONResponse:
        return _answer(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return _answer(InvalidInputError(problems or "invalid request"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, error_for_status(exc.status_code).__name__, str(exc.detail),
                      headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _answer(CorralError(f"internal error ({type(exc).__name__}); the server log has details"))
