"""What a pause captures and a resume puts back, as backend-neutral steps.

A snapshot is a manifest (a JSON blob) with one part per :class:`SnapshotStep`.
:class:`FilesStep` works on every backend because it only speaks the agent
protocol: it walks the sandbox's home directory, stores each file in the blob
store, and on resume writes them back (files of any size: see
:mod:`corral.server.file_transfer`). A backend that can capture memory (the
microVM backend) adds its own step; a step's ``restore`` runs on a sandbox
that was started for the resume, in the order the steps were captured.
"""

from __future__ import annotations

import abc
import asyncio
import shlex
import stat
from typing import Any

from corral.errors import InvalidInputError
from corral.protocol import wire
from corral.sandbox import AsyncSandbox
from corral.server.blobs import BlobStore
from corral.server.file_transfer import read_whole, shell, write_whole

#: Where FilesStep starts; everything a user writes through ``files`` or the
#: default working directory is under it.
CAPTURED_ROOT = wire.SANDBOX_HOME


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
                    data = await read_whole(sandbox, _absolute(relative))
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
            await shell(sandbox, f"mkdir -p -- {paths}")
        for entry in entries:
            if entry["kind"] == "file":
                data = await asyncio.to_thread(blobs.get, entry["digest"])
                await write_whole(sandbox, _absolute(entry["path"]), data, entry["mode"])
        links = [entry for entry in entries if entry["kind"] == "symlink"]
        if links:
            await shell(sandbox, "; ".join(
                f"ln -sfn -- {shlex.quote(entry['target'])} {shlex.quote(_absolute(entry['path']))}" for entry in links
            ))
        if directories:  # modes last: a read-only directory must first receive its files
            await shell(sandbox, "; ".join(
                f"chmod {entry['mode']:o} -- {shlex.quote(_absolute(entry['path']))}"
                for entry in sorted(directories, key=lambda e: -e["path"].count("/"))
            ))


def _absolute(relative: str) -> str:
    return f"{CAPTURED_ROOT}/{relative}" if relative else CAPTURED_ROOT


async def _link_targets(sandbox: AsyncSandbox, links: list[str]) -> list[str]:
    if not links:
        return []
    script = "for p in " + " ".join(shlex.quote(_absolute(p)) for p in links) + '; do readlink -- "$p"; printf "\\0"; done'
    output = await shell(sandbox, script)
    targets = [target.removesuffix("\n") for target in output.split("\0")[:-1]]
    if len(targets) != len(links):
        raise InvalidInputError("cannot pause: a symlink changed while it was being captured")
    return targets


#: The steps every backend runs, in order.
DEFAULT_STEPS: tuple[SnapshotStep, ...] = (FilesStep(),)
