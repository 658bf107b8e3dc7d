"""Building a template: run its steps in a fresh sandbox of its base, then store the home directory as a layer.

Progress is reported as it goes (one callback per step). A failing step fails
the build with the step's output; nothing is recorded. An identical definition
built before is not built again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from corral.contract.schemas import TemplateDefinition, TemplateInfo, TemplateStep
from corral.errors import InvalidInputError
from corral.hosted.blobs import BlobStore
from corral.hosted.snapshot_steps import FilesStep
from corral.hosted.templates import TemplateStore
from corral.sandbox import AsyncSandbox

Progress = Callable[[int, int, str], None]


def _describe(step: TemplateStep) -> str:
    if step.run is not None:
        return f"run: {step.run[:80]}"
    if step.files is not None:
        return f"files: {', '.join(sorted(step.files))[:80]}"
    if step.packages is not None:
        return f"packages: {' '.join(step.packages)[:80]}"
    return f"env: {', '.join(sorted(step.env or {}))}"


async def build_template(store: TemplateStore, blobs: BlobStore, owner: str, definition: TemplateDefinition,
                         progress: Progress, *, isolation: str = "auto") -> TemplateInfo:
    """Build (or find already built) ``definition`` for ``owner``; progress(step, total, message) as it goes."""
    total = len(definition.steps) + 2
    cached = store.cached(owner, definition)
    if cached is not None:
        progress(total, total, f"already built as {cached.id}")
        return cached
    started = time.monotonic()
    env = dict(definition.env)
    progress(1, total, f"starting a {definition.base} sandbox")
    async with AsyncSandbox(definition.base, isolation=isolation, env=env) as sandbox:
        for number, step in enumerate(definition.steps, start=2):
            progress(number, total, _describe(step))
            await _run_step(sandbox, step, env, definition.build_timeout, number)
        progress(total, total, "storing the layer")
        with blobs.batch() as layer:  # a failed build leaves no blobs behind
            files = await FilesStep().capture(sandbox, layer)
            manifest = json.dumps({"version": 1, "parts": {"files": files}}, sort_keys=True).encode()
            digest = await asyncio.to_thread(layer.put, manifest)
            file_count, size_bytes = FilesStep.summary(files)
            store.record(owner, definition, digest, file_count, size_bytes, round(time.monotonic() - started, 3))
    return store.get(owner, definition.name)


async def _run_step(sandbox: AsyncSandbox, step: TemplateStep, env: dict[str, str], timeout: float,
                    number: int) -> None:
    if step.env is not None:
        env.update(step.env)
    elif step.files is not None:
        for path, content in step.files.items():
            await sandbox.files.write(path, content)
    elif step.packages is not None:
        await sandbox.install(step.packages)
    else:
        result = await sandbox.commands.run(step.run, env=env, timeout=timeout)
        if not result.ok:
            reason = "timed out" if result.timed_out else f"exit {result.exit_code}"
            output = (result.stderr or result.stdout).strip()[-1500:]
            raise InvalidInputError(f"template step {number} ({_describe(step)}) failed ({reason}): {output}")
