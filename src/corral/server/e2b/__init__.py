"""E2B compatibility: the official ``e2b`` and ``e2b-code-interpreter`` SDKs work against ``corral serve``.

A front-end only: its routes translate E2B's control plane (REST), envd's
Connect-JSON process and filesystem services, ``/files`` and the code
interpreter's ``/execute`` and ``/contexts`` onto corral's sandbox service, at
the root of the same port as ``/v1`` (see docs/e2b.md). The SDK names the
sandbox in ``E2b-Sandbox-Id`` and the port in ``E2b-Sandbox-Port``; the paths of
envd (49983) and of the code interpreter (49999) do not collide, so one
listener serves both.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request

from corral.server.e2b import (
    control,
    files_http,
    filesystem_service,
    interpreter,
    process_service,
)
from corral.server.e2b.errors import E2BError, PlainErrorRoute
from corral.server.e2b.terminals import Terminals


def install(app: FastAPI) -> None:
    """Serve E2B's API on ``app`` (its routes, and the PTYs, watchers and run counts they share)."""
    app.state.e2b_terminals = Terminals()
    app.state.e2b_watchers = {}
    app.state.e2b_executions = {}
    methods: dict[str, set[str]] = {}
    for module in (control, files_http, process_service, filesystem_service, interpreter):
        app.include_router(module.router)
        for route in module.router.routes:
            methods.setdefault(route.path, set()).update(route.methods)
    app.include_router(_wrong_methods(methods))


def _wrong_methods(methods: dict[str, set[str]]) -> APIRouter:
    """405 in E2B's error shape for the methods an E2B path does not have (not the framework's body)."""
    router = APIRouter(route_class=PlainErrorRoute, include_in_schema=False)
    for path, allowed in methods.items():
        others = {"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed

        async def refuse(request: Request, allowed: set[str] = allowed) -> None:
            raise E2BError(405, f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}")

        if others:
            router.add_api_route(path, refuse, methods=sorted(others))
    return router
