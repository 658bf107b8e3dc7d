"""``corral.arun``: run code once, isolated, on a shared warm sandbox, a pool, or a fresh sandbox.

By default calls with the same configuration share one warm sandbox per event
loop (started on first use; one more per concurrent caller, up to
``SHARED_MAX_SANDBOXES``; closed after ``SHARED_IDLE_S`` without a run, at
:func:`close_default_pools` and at exit): each run gets namespaces of its own
in it (see ``corral.pool``), so the second and later calls cost a fork, not a
sandbox start. ``network``, ``expose`` and ``packages`` need a sandbox of their
own, and ``fresh=True`` (or ``CORRAL_FRESH_SANDBOX=1`` in the environment)
asks for one: it is cold-started, runs the code and is torn down in the
background. With ``pool_size=N`` calls share a warm pool of N sandboxes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from corral.errors import InvalidInputError
from corral.models import ExecutionResult, Language, SandboxSpec
from corral.network import ExposedPort, Network, PortMapping
from corral.pool import AsyncPool, run_files
from corral.sandbox import AsyncSandbox, OutputCallback, make_spec
from corral.sync_bridge import bridge

#: A shared warm sandbox is closed after this many seconds without a run.
SHARED_IDLE_S = 60.0
#: Set to 1 to give every corral.run a fresh sandbox of its own (no shared warm sandbox).
FRESH_ENV = "CORRAL_FRESH_SANDBOX"
#: The pool size standing for "the shared sandbox" in _default_pools' keys.
_SHARED = 0
#: Sandboxes the shared "sandbox" may grow to, one per concurrent caller (each serves one run at a time).
SHARED_MAX_SANDBOXES = min(os.cpu_count() or 1, 4)

_default_pools: dict[tuple[asyncio.AbstractEventLoop, SandboxSpec, int], AsyncPool] = {}
_last_used: dict[tuple[asyncio.AbstractEventLoop, SandboxSpec, int], float] = {}
#: One task per shared sandbox: closes it when idle, or when its loop cancels every task (asyncio.run ending).
_keepers: dict[tuple[asyncio.AbstractEventLoop, SandboxSpec, int], asyncio.Task] = {}


async def arun(
    code: str,
    language: Language = "python",
    *,
    isolation: str = "auto",
    timeout: float | None = None,
    memory_mb: int | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    disk_mb: int | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | str | None = None,
    network: Network | None = None,
    expose: list[PortMapping | int] | None = None,
    packages: list[str] | None = None,
    index_url: str | None = None,
    files: dict[str, bytes | str] | None = None,
    fresh: bool = False,
    pool: AsyncPool | None = None,
    pool_size: int | None = None,
    on_stdout: OutputCallback | None = None,
    on_stderr: OutputCallback | None = None,
    on_exposed: Callable[[list[ExposedPort]], Any] | None = None,
) -> ExecutionResult:
    """Run ``code`` once in a fresh process, isolated from every other run, and return the result.

    ``files`` (relative path -> content) are written into the run's home first.
    Runs share a warm sandbox per configuration unless ``fresh`` (see the module
    docstring); ``network``, ``expose`` and ``packages`` always get a sandbox of
    their own, set up before the code runs, and ``on_exposed`` is called with
    the exposed ports once they listen.
    """
    limits: dict[str, Any] = {"memory_mb": memory_mb, "pids": pids, "cpus": cpus, "disk_mb": disk_mb}
    if pool is not None and (env or any(value is not None for value in limits.values())):
        raise InvalidInputError("a pool fixes env and limits: pass them to the Pool, not to run(pool=...)")
    own_sandbox = network is not None or bool(expose) or bool(packages)
    if (pool is not None or pool_size) and own_sandbox:
        raise InvalidInputError("network, expose and packages need their own sandbox: not with pool or pool_size")
    checked_files = run_files(files)
    if pool is None and pool_size:
        pool = await default_pool(pool_size, language=language, isolation=isolation, env=env, **limits)
    elif pool is None and not own_sandbox and not fresh and os.environ.get(FRESH_ENV, "") in ("", "0"):
        pool = await default_pool(_SHARED, language=language, isolation=isolation, env=env, **limits)
    if pool is not None:
        return await pool.run(code, language=language, timeout=timeout, env=None, stdin=stdin, files=files,
                              on_stdout=on_stdout, on_stderr=on_stderr)
    sandbox = AsyncSandbox(language, isolation=isolation, env=env, timeout=timeout, network=network, expose=expose,
                           packages=packages, index_url=index_url, **limits)
    options = dataclasses.replace(sandbox.run_options(code, language=language, stdin=stdin), retire=True)
    async with sandbox:
        for path, data in checked_files:
            await sandbox.files.write(path, data)
        if on_exposed is not None and sandbox.exposed_ports:
            on_exposed(sandbox.exposed_ports)
        return await sandbox.execute(options, on_stdout=on_stdout, on_stderr=on_stderr)


async def default_pool(size: int, **config: Any) -> AsyncPool:
    """The shared pool for this configuration and size on the running loop (size 0: the shared sandbox)."""
    language, isolation, env = config.pop("language"), config.pop("isolation"), config.pop("env")
    loop = asyncio.get_running_loop()
    for stale in [key for key in _default_pools if key[0].is_closed()]:  # a loop closed without cancelling
        _last_used.pop(stale, None)
        _keepers.pop(stale, None)
        _default_pools.pop(stale).stop_now()
    key = (loop, make_spec(language, isolation, env, **config), size)
    pool = _default_pools.get(key)
    if pool is None:
        pool = _default_pools[key] = AsyncPool(size or SHARED_MAX_SANDBOXES, language=language, isolation=isolation,
                                               env=env, **config)
        if size == _SHARED:
            pool.refill = False  # the first run cold-starts the shared sandbox, which then stays
            _keepers[key] = asyncio.ensure_future(_keep_shared(key, pool))
        else:
            await pool.start(wait=False)
    _last_used[key] = time.monotonic()
    return pool


async def _keep_shared(key: tuple[asyncio.AbstractEventLoop, SandboxSpec, int], pool: AsyncPool) -> None:
    """Close the shared sandbox once it idled SHARED_IDLE_S, or when this task is cancelled."""
    try:
        while pool.serving or time.monotonic() - _last_used.get(key, 0.0) < SHARED_IDLE_S:
            await asyncio.sleep(SHARED_IDLE_S)
    finally:
        if _default_pools.get(key) is pool:
            del _default_pools[key]
        _last_used.pop(key, None)
        _keepers.pop(key, None)
        await pool.close()


async def close_default_pools() -> None:
    """Close the shared pools and warm sandboxes of the running loop."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _default_pools if key[0] is loop]:
        keeper = _keepers.pop(key, None)
        pool = _default_pools.pop(key)
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await pool.close()


@atexit.register
def _stop_leftover_sandboxes() -> None:
    """At exit, stop the sandboxes of shared pools whose loop is gone (``asyncio.run`` returned)."""
    for pool in _default_pools.values():
        pool.stop_now()


def _forget_parent_pools() -> None:
    """In a forked child: the shared pools are the parent's (its sandboxes, its loops); never stop them here."""
    _default_pools.clear()
    _last_used.clear()
    _keepers.clear()


bridge.at_exit(close_default_pools)  # registered after lease's teardown wait, so it runs before it
os.register_at_fork(after_in_child=_forget_parent_pools)
