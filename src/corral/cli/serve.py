"""``corral serve``: the HTTP API on one machine, state in SQLite under the data directory."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from corral.backends import registry
from corral.errors import CorralError
from corral.hosted.database import default_state_dir


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8700,
    data_dir: Annotated[
        Optional[Path], typer.Option(help="State directory (database, snapshots) [default: <corral data dir>/server].")
    ] = None,
    max_sandboxes_per_key: Annotated[int, typer.Option(min=1, help="Live sandboxes one API key may hold.")] = 20,
    max_streams: Annotated[int, typer.Option(min=1, help="Streamed responses at once.")] = 64,
    isolation: Annotated[str, typer.Option(help="auto | process | microvm (see corral doctor).")] = "auto",
    reap_interval: Annotated[float, typer.Option(min=0.05, help="Seconds between looks for expired sandboxes.")] = 1.0,
    warm: Annotated[int, typer.Option(min=0, max=64, help="Sandboxes kept ready per template used (0: cold starts).")] = 0,
    max_file_mb: Annotated[int, typer.Option(min=1, help="Largest file upload, in MiB (streamed into the sandbox).")] = 512,
    pause_on_shutdown: Annotated[
        bool, typer.Option(help="On shutdown, pause running sandboxes (files kept as snapshots) instead of killing them.")
    ] = False,
    blob_grace: Annotated[
        float, typer.Option(min=0, help="Seconds an unreferenced snapshot blob is kept before it is collected.")
    ] = 3600.0,
    batch_runs_per_key: Annotated[
        int, typer.Option(min=1, max=256, help="Batch items (/v1/batch, /run_code) one API key runs at once.")
    ] = 8,
    sandbox_fusion_no_auth: Annotated[
        bool, typer.Option(help="Let SandboxFusion's /run_code run without credentials (loopback binds only).")
    ] = False,
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a client has to send a request's headers (then it is cut off).")
    ] = 10.0,
    metrics_auth: Annotated[
        bool, typer.Option("--metrics-auth/--public-metrics", help="Whether /metrics needs an API key.")
    ] = True,
    ray: Annotated[
        Optional[str], typer.Option(help="Ray cluster address (auto, host:port): start sandboxes on its nodes that "
                                         "advertise corral_host (needs corral[ray]; see docs/cluster.md).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="critical | error | warning | info | debug")] = "info",
) -> None:
    """Serve sandboxes over HTTP. On first start, creates and prints an API key."""
    import uvicorn  # noqa: PLC0415 - the server extra is needed by this command only

    from corral.server.app import ServerConfig, create_app  # noqa: PLC0415
    from corral.server.routes.sandbox_fusion import RedactKeyInPath  # noqa: PLC0415
    from corral.server.http_protocol import with_header_deadline  # noqa: PLC0415

    if sandbox_fusion_no_auth and not _loopback(host):
        typer.echo(f"corral: --sandbox-fusion-no-auth is refused on {host}: bind a loopback address "
                   "(127.0.0.1, ::1) or use a key scoped with `corral keys create --scope sandbox-fusion`", err=True)
        raise typer.Exit(2)
    corral_log = logging.getLogger("corral")
    corral_log.setLevel(log_level.upper())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s %(message)s"))
    corral_log.addHandler(handler)
    try:  # at start, not at the first create: a host where no sandbox can start is refused now
        registry.resolve(isolation)
    except CorralError as exc:
        sys.stderr.write(f"corral serve: cannot start sandboxes here: {exc}\n")
        raise typer.Exit(2) from None
    config = ServerConfig(data_dir or default_state_dir(), max_sandboxes_per_key=max_sandboxes_per_key,
                          max_streams=max_streams, isolation=isolation, reap_interval_s=reap_interval,
                          warm_per_template=warm, blob_grace_s=blob_grace,
                          max_file_bytes=max_file_mb * 1024 * 1024, pause_on_shutdown=pause_on_shutdown,
                          batch_runs_per_key=batch_runs_per_key, sandbox_fusion_no_auth=sandbox_fusion_no_auth,
                          public_metrics=not metrics_auth, ray_address=ray)
    app = create_app(config)
    keys = app.state.service.keys
    if not keys.any_active():
        record, key = keys.create("initial")
        # printed once, to the terminal only (never to a log); only its hash is stored
        sys.stderr.write(f"corral: created API key {record.id} (shown only now):\n"
                         f"export CORRAL_API_KEY={key}\n")
        sys.stderr.flush()
    logging.getLogger("uvicorn.access").addFilter(RedactKeyInPath())  # a sandbox-fusion key in a path stays out of logs
    uvicorn.run(app, host=host, port=port, log_level=log_level, http=with_header_deadline(header_timeout))


def _loopback(host: str) -> bool:
    """True when ``host`` is a loopback address (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
