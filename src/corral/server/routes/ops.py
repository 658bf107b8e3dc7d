"""Health (no credentials needed) and Prometheus metrics (an API key, unless ``corral serve --public-metrics``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import corral
from corral.backends import registry
from corral.contract.schemas import Health
from corral.server.routes.common import errors, service

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """The server answers; which isolation levels work here; how many sandboxes run."""
    return Health(version=corral.__version__, isolation=registry.available(),
                  sandboxes_running=len(service(request).live))


@metrics_router.get("/metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                     "description": "Prometheus text format"}, **errors(401, 403)})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (the app adds the API key check unless the server was started with --public-metrics)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
