"""What a pause captures and a resume puts back, as backend-neutral steps.

A snapshot is a manifest (a JSON blob) with one part per :class:`SnapshotStep`.
:class:`FilesStep` works on every backend because it only speaks the agent
protocol: it walks the sandbox's home directory, stores each file in the blob
store, and on resume writes them back. Files over the protocol's 16 MiB limit
of one file operation are read in chunks (``dd | base64`` through a command's
output) and written back in chunks (appended from a command's stdin). A backend that can capture memory (the
microVM backend) adds its own step; a step's ``restore`` runs on a sandbox
that was started for the resume, in the order the steps were captured.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import shlex
import stat
from typing import Any

from corral.errors import FileOperationError, InvalidInputError
from corral.protocol import wire
from corral.sandbox import AsyncSandbox
from corral.server.blobs import BlobStore

#: Where FilesStep starts; everything a user writes through ``files`` or the
#: default working directory is under it.
CAPTURED_ROOT = wire.SANDBOX_HOME
#: Largest chunk of a big file read through one command (its base64 must fit the output limit).
CHUNK_BYTES = 3 * 1024 * 1024
MIN_CHUNK_BYTES = 3 * 1024


class SnapshotStep(abc.ABC):
    """One part of a continuation snapshot."""

    #: The part's key in the manifest.
    name: str

    @abc.abstractmethod
    async def capture(self, sandbox: AsyncSandbox, blobs: BlobStore) -> dict[str, Any]:
        """Capture this part of a running sandbox; every blob it names is durable when it returns.

        Raises InvalidInputError when the sandbox holds something this step cannot capture
        (the sandbox is left as it was).
        """

    @abc.abstractmethod
    async def restore(self, sandbox: AsyncSandbox, blobs: BlobStore, part: dict[str, Any]) -> None:
        """Put this part back into a freshly started ``sandbox``."""


class FilesStep(SnapshotStep):
    """Every file, directory and symlink under the sandbox's home, with its mode."""

    name = "files"

    async def capture(self, sandbox: AsyncSandbox, blobs: BlobStore) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        symlinks: list[str] = []
        pending = [""]
        while pending:
            directory = pending.pop()
            for entry in await sandbox.files.list(_absolute(directory)):
                relative = f"{directory}/{entry.name}" if directory else entry.name
                mode = stat.S_IMODE(entry.mode)
                if entry.kind == "dir":
                    entries.append({"path": relative, "kind": "dir", "mode": mode})
                    pending.append(relative)
                elif entry.kind == "file":
                    data = await _read_file(sandbox, _absolute(relative), entry.size)
                    entries.append({"path": relative, "kind": "file", "mode": mode,
                                    "digest": await asyncio.to_thread(blobs.put, data), "size": len(data)})
                elif entry.kind == "symlink":
                    symlinks.append(relative)
                # sockets, fifos and devices are not files a user can expect back
        for relative, target in zip(symlinks, await _link_targets(sandbox, symlinks)):
            entries.append({"path": relative, "kind": "symlink", "target": target})
        return {"root": CAPTURED_ROOT, "entries": entries}

    async def restore(self, sandbox: AsyncSandbox, blobs: BlobStore, part: dict[str, Any]) -> None:
        entries = part["entries"]
        directories = [entry for entry in entries if entry["kind"] == "dir"]
        if directories:
            paths = " ".join(shlex.quote(_absolute(entry["path"])) for entry in directories)
            await _shell(sandbox, f"mkdir -p -- {paths}")
        for entry in entries:
            if entry["kind"] == "file":
                data = await asyncio.to_thread(blobs.get, entry["digest"])
                await _write_file(sandbox, _absolute(entry["path"]), data, entry["mode"])
        links = [entry for entry in entries if entry["kind"] == "symlink"]
        if links:
            await _shell(sandbox, "; ".join(
                f"ln -sfn -- {shlex.quote(entry['target'])} {shlex.quote(_absolute(entry['path']))}" for entry in links
            ))
        if directories:  # modes last: a read-only directory must first receive its files
            await _shell(sandbox, "; ".join(
                f"chmod {entry['mode']:o} -- {shlex.quote(_absolute(entry['path']))}"
                for entry in sorted(directories, key=lambda e: -e["path"].count("/"))
            ))


async def _read_file(sandbox: AsyncSandbox, path: str, size: int) -> bytes:
    """A whole file: one read, or chunks through a command's output when it is over the protocol's limit."""
    if size <= wire.MAX_FILE_BYTES:
        try:
            return await sandbox.files.read(path)
        except FileOperationError as exc:
            if exc.code != "too_large":  # it grew since it was listed: read it in chunks
                raise
    # base64 of a chunk must fit in one command's captured output
    chunk = min(CHUNK_BYTES, sandbox.spec.limits.stdout_limit // 4 * 3)
    if chunk < MIN_CHUNK_BYTES:
        raise InvalidInputError(f"cannot pause: {path} is over {wire.MAX_FILE_BYTES} bytes and the sandbox's "
                                f"stdout_limit ({sandbox.spec.limits.stdout_limit}) is too small to read it in chunks")
    parts = []
    for index in range(size // chunk + 2):
        output = await _shell(sandbox, f"dd if={shlex.quote(path)} bs={chunk} skip={index} count=1 status=none"
                                       " | base64 -w0")
        part = base64.b64decode(output)
        parts.append(part)
        if len(part) < chunk:
            return b"".join(parts)
    raise InvalidInputError(f"cannot pause: {path} kept growing while it was being captured")


async def _write_file(sandbox: AsyncSandbox, path: str, data: bytes, mode: int) -> None:
    """Write a whole file: one write, or chunks appended from a command's stdin when it is over the limit."""
    if len(data) <= wire.MAX_FILE_BYTES:
        await sandbox.files.write(path, data, mode=mode)
        return
    await sandbox.files.write(path, data[:wire.MAX_STDIN_BYTES], mode=0o600)
    for start in range(wire.MAX_STDIN_BYTES, len(data), wire.MAX_STDIN_BYTES):
        result = await sandbox.commands.run(f"cat >> {shlex.quote(path)}", stdin=data[start:start + wire.MAX_STDIN_BYTES],
                                            timeout=60)
        if not result.ok:
            raise InvalidInputError(f"restoring {path} failed (exit {result.exit_code}): {result.stderr.strip()[-500:]}")
    await _shell(sandbox, f"chmod {mode:o} -- {shlex.quote(path)}")


def _absolute(relative: str) -> str:
    return f"{CAPTURED_ROOT}/{relative}" if relative else CAPTURED_ROOT


async def _link_targets(sandbox: AsyncSandbox, links: list[str]) -> list[str]:
    if not links:
        return []
    script = "for p in " + " ".join(shlex.quote(_absolute(p)) for p in links) + '; do readlink -- "$p"; printf "\\0"; done'
    output = await _shell(sandbox, script)
    targets = [target.removesuffix("\n") for target in output.split("\0")[:-1]]
    if len(targets) != len(links):
        raise InvalidInputError("cannot pause: a symlink changed while it was being captured")
    return targets


async def _shell(sandbox: AsyncSandbox, script: str) -> str:
    result = await sandbox.commands.run(script, timeout=60)
    if not result.ok:
        raise InvalidInputError(f"snapshot step failed (exit {result.exit_code}): {result.stderr.strip()[-500:]}")
    if result.stdout_truncated:
        raise InvalidInputError("snapshot step failed: its output passed the sandbox's stdout_limit")
    return result.stdout


#: The steps every backend runs, in order.
DEFAULT_STEPS: tuple[SnapshotStep, ...] = (FilesStep(),)
