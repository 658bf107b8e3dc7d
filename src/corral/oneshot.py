"""``corral.arun``: run code once in a fresh sandbox, or on a shared warm pool.

Without ``pool``/``pool_size`` each call cold-starts a sandbox, runs the code
and returns; the sandbox is torn down in the background. With ``pool_size=N``
calls with the same configuration share one warm pool of N sandboxes on the
current event loop (kept until :func:`close_default_pools`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from corral.errors import InvalidInputError
from corral.models import ExecutionResult, Language, SandboxSpec
from corral.network import ExposedPort, Network, PortMapping
from corral.pool import AsyncPool
from corral.sandbox import AsyncSandbox, OutputCallback, make_spec

_default_pools: dict[tuple[asyncio.AbstractEventLoop, SandboxSpec, int], AsyncPool] = {}


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
    pool: AsyncPool | None = None,
    pool_size: int | None = None,
    on_stdout: OutputCallback | None = None,
    on_stderr: OutputCallback | None = None,
    on_exposed: Callable[[list[ExposedPort]], Any] | None = None,
) -> ExecutionResult:
    """Run ``code`` once in a fresh process in its own sandbox and return the result.

    ``network``, ``expose`` and ``packages`` are set up before the code runs;
    ``on_exposed`` is called with the exposed ports once they listen.
    """
    limits: dict[str, Any] = {"memory_mb": memory_mb, "pids": pids, "cpus": cpus, "disk_mb": disk_mb}
    if pool is not None and (env or any(value is not None for value in limits.values())):
        raise InvalidInputError("a pool fixes env and limits: pass them to the Pool, not to run(pool=...)")
    if pool is not None or pool_size:
        if network is not None or expose or packages:
            raise InvalidInputError("network, expose and packages need their own sandbox: not with pool or pool_size")
    if pool is None and pool_size:
        pool = await default_pool(pool_size, language=language, isolation=isolation, env=env, **limits)
    if pool is not None:
        return await pool.run(code, language=language, timeout=timeout, env=None, stdin=stdin,
                              on_stdout=on_stdout, on_stderr=on_stderr)
    sandbox = AsyncSandbox(language, isolation=isolation, env=env, timeout=timeout, network=network, expose=expose,
                           packages=packages, index_url=index_url, **limits)
    options = dataclasses.replace(sandbox._options(code, language, False, None, None, None, stdin), retire=True)
    async with sandbox:
        if on_exposed is not None and sandbox.exposed_ports:
            on_exposed(sandbox.exposed_ports)
        return await sandbox._run_oneshot(options, on_stdout, on_stderr)


async def default_pool(size: int, **config: Any) -> AsyncPool:
    """The shared pool for this configuration and size on the running loop."""
    language, isolation, env = config.pop("language"), config.pop("isolation"), config.pop("env")
    key = (asyncio.get_running_loop(), make_spec(language, isolation, env, **config), size)
    pool = _default_pools.get(key)
    if pool is None:
        pool = _default_pools[key] = AsyncPool(size, language=language, isolation=isolation, env=env, **config)
        await pool.start(wait=False)
    return pool


async def close_default_pools() -> None:
    """Close the shared pools of the running loop."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _default_pools if key[0] is loop]:
        await _default_pools.pop(key).close()
