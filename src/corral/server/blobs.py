"""A content-addressed store of immutable blobs on disk, durable before it answers.

A blob is named by the SHA-256 of its bytes (``blobs/ab/abcd...``). ``put``
writes to a temporary file, fsyncs it, renames it into place and fsyncs the
directory, so once it returns the blob survives a crash; the same content is
stored once (storing it again refreshes its modification time).
:meth:`BlobStore.collect` removes blobs nothing references any more, but only
ones untouched for a grace period, so a blob being stored for a snapshot not
yet recorded is never collected.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path


class BlobStore:
    """Blobs under ``root``, addressed by SHA-256."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (it may not exist)."""
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a SHA-256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        """True when the blob is stored."""
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file():
            os.utime(target)  # referenced again now: a collection in progress must keep it
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        _fsync_dir(target.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a stored blob, checked against its digest."""
        data = self.path(digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"blob {digest} is corrupt on disk")
        return data


    def collect(self, keep: set[str], grace_s: float) -> tuple[int, int]:
        """Remove blobs (and leftover temporary files) not in ``keep`` and untouched for ``grace_s``.

        Returns (files removed, bytes freed).
        """
        cutoff = time.time() - grace_s
        removed = freed = 0
        for path in self.root.glob("??/*"):
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            if path.name in keep or status.st_mtime > cutoff:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            freed += status.st_size
        return removed, freed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
