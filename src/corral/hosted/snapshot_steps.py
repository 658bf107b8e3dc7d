"""What a pause captures and a resume puts back, as backend-neutral steps.

A snapshot is a manifest (a JSON blob) with one part per :class:`SnapshotStep`.
:class:`FilesStep` works on every backend because it only speaks the agent
protocol: it archives the sandbox's home directory with tar inside the sandbox
and moves the archive in bounded chunks (see :mod:`corral.hosted.home_archive`),
each chunk a blob. A backend that can capture memory (the microVM backend) adds
its own step; a step's ``restore`` runs on a sandbox that was started for the
resume, in the order the steps were captured. Parts written by older corrals
(one blob per file, listed in ``entries``) are still restored.
"""

from __future__ import annotations

import abc
import asyncio
import shlex
from collections.abc import Iterator
from typing import Any

from corral.hosted import home_archive
from corral.hosted.blobs import BlobStore
from corral.hosted.file_transfer import shell, write_whole
from corral.protocol import wire
from corral.sandbox import AsyncSandbox

#: Where FilesStep starts; everything a user writes through ``files`` or the
#: default working directory is under it.
CAPTURED_ROOT = wire.SANDBOX_HOME
#: Largest generated helper command of an older part's restore (the protocol's code limit is 1 MiB).
MAX_SCRIPT_CHARS = 64 * 1024


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

    @staticmethod
    @abc.abstractmethod
    def digests(part: dict[str, Any]) -> list[str]:
        """The blobs a captured part references (what blob collection must keep)."""


class FilesStep(SnapshotStep):
    """Every file, directory and symlink under the sandbox's home: modes, hard links and sparse files kept."""

    name = "files"

    async def capture(self, sandbox: AsyncSandbox, blobs: BlobStore) -> dict[str, Any]:
        archive = await home_archive.capture(sandbox, blobs, CAPTURED_ROOT)
        return {"root": CAPTURED_ROOT, "format": "tar", **archive}

    async def restore(self, sandbox: AsyncSandbox, blobs: BlobStore, part: dict[str, Any]) -> None:
        if part.get("format") == "tar":
            await home_archive.restore(sandbox, blobs, CAPTURED_ROOT, part["chunks"])
        else:
            await _restore_entries(sandbox, blobs, part["entries"])

    @staticmethod
    def digests(part: dict[str, Any]) -> list[str]:
        if part.get("format") == "tar":
            return list(part["chunks"])
        return [entry["digest"] for entry in part["entries"] if entry["kind"] == "file"]

    @staticmethod
    def summary(part: dict[str, Any]) -> tuple[int, int]:
        """(regular files, their bytes) of a part."""
        if part.get("format") == "tar":
            return part["file_count"], part["file_bytes"]
        files = [entry for entry in part["entries"] if entry["kind"] == "file"]
        return len(files), sum(entry["size"] for entry in files)


async def _restore_entries(sandbox: AsyncSandbox, blobs: BlobStore, entries: list[dict[str, Any]]) -> None:
    """Restore a part of the older format: directories, files one by one, symlinks, then directory modes."""
    directories = [entry for entry in entries if entry["kind"] == "dir"]
    for script in _batches("mkdir -p --", [shlex.quote(_absolute(entry["path"])) for entry in directories], " "):
        await shell(sandbox, script)
    for entry in entries:
        if entry["kind"] == "file":
            data = await asyncio.to_thread(blobs.get, entry["digest"])
            await write_whole(sandbox, _absolute(entry["path"]), data, entry["mode"])
    links = [f"ln -sfn -- {shlex.quote(entry['target'])} {shlex.quote(_absolute(entry['path']))}"
             for entry in entries if entry["kind"] == "symlink"]
    for script in _batches("", links, "; "):
        await shell(sandbox, script)
    modes = [f"chmod {entry['mode']:o} -- {shlex.quote(_absolute(entry['path']))}"
             for entry in sorted(directories, key=lambda e: -e["path"].count("/"))]
    for script in _batches("", modes, "; "):  # modes last: a read-only directory must first receive its files
        await shell(sandbox, script)


def _batches(prefix: str, items: list[str], separator: str) -> Iterator[str]:
    """Commands of at most MAX_SCRIPT_CHARS, each ``prefix`` followed by as many items as fit."""
    batch: list[str] = []
    length = len(prefix)
    for item in items:
        if batch and length + len(separator) + len(item) > MAX_SCRIPT_CHARS:
            yield f"{prefix} {separator.join(batch)}".strip()
            batch, length = [], len(prefix)
        batch.append(item)
        length += len(separator) + len(item)
    if batch:
        yield f"{prefix} {separator.join(batch)}".strip()


def _absolute(relative: str) -> str:
    return f"{CAPTURED_ROOT}/{relative}" if relative else CAPTURED_ROOT


#: The steps every backend runs, in order.
DEFAULT_STEPS: tuple[SnapshotStep, ...] = (FilesStep(),)
