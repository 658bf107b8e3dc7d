"""A content-addressed store of immutable blobs on disk, durable before it answers.

A blob is named by the SHA-256 of its bytes (``blobs/ab/abcd...``). ``put``
writes to a temporary file, fsyncs it, renames it into place and fsyncs the
directory, so once it returns the blob survives a crash; the same content is
stored once (storing it again refreshes its modification time).
:meth:`BlobStore.collect` removes blobs nothing references any more, but only
ones untouched for a grace period, so a blob being stored for a snapshot not
yet recorded is never collected.

A write that fails leaves nothing behind: its temporary file is removed, and a
full disk is a :class:`corral.errors.StorageFullError`. What a failed pause or
build stored before it failed is removed too, through a :class:`BlobBatch`
(only blobs it created and nothing else stored since).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from corral.errors import StorageFullError

#: errno values that mean "no room left" on the data disk.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: OSError, what: str) -> OSError | StorageFullError:
    """A StorageFullError for a full disk, else ``exc`` itself."""
    if exc.errno in _FULL:
        return StorageFullError(f"the server's data disk is full: {what} failed ({exc.strerror}); free space "
                                "on it (delete snapshots or templates) and retry")
    return exc


class BlobStore:
    """Blobs under ``root``, addressed by SHA-256."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        #: Blobs a batch created that no other writer stored since (a failed batch may remove them).
        self._unclaimed: set[str] = set()

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (it may not exist)."""
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a SHA-256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        """True when the blob is stored."""
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its digest. StorageFullError on a full disk (nothing is left)."""
        return self._put(data, claim=False)[0]

    def _put(self, data: bytes, *, claim: bool) -> tuple[str, bool]:
        """(digest, True if this call created the blob); ``claim``: a batch may remove it again."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if self._touch(target, digest):
            return digest, False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        except OSError as exc:
            raise storage_error(exc, "storing a blob") from exc
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            with self._lock:
                created = not self._touch(target, digest)  # another writer may have finished it meanwhile
                if created:
                    os.replace(temporary, target)
                    if claim:
                        self._unclaimed.add(digest)
            if created:
                _fsync_dir(target.parent)
        except OSError as exc:
            raise storage_error(exc, "storing a blob") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)  # gone already when it was renamed into place
        return digest, created

    def _touch(self, target: Path, digest: str) -> bool:
        """If the blob exists: refresh its time (a collection in progress must keep it), unclaim it, True."""
        with self._lock:
            if not target.is_file():
                return False
            os.utime(target)
            self._unclaimed.discard(digest)  # someone else stores it too: no batch may remove it
            return True

    @contextlib.contextmanager
    def batch(self) -> Iterator[BlobBatch]:
        """A view whose ``put`` calls are undone if the block fails (see :class:`BlobBatch`)."""
        batch = BlobBatch(self)
        try:
            yield batch
        except BaseException:
            batch.discard()
            raise
        finally:
            with self._lock:
                self._unclaimed -= batch.created

    def _discard(self, digests: set[str]) -> None:
        with self._lock:
            for digest in digests & self._unclaimed:
                with contextlib.suppress(OSError):
                    self.path(digest).unlink()
            self._unclaimed -= digests

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


class BlobBatch(BlobStore):
    """The blob store as seen by one pause or build: on failure, the blobs it created go again.

    A blob another writer stored meanwhile (the same content) is kept.
    """

    def __init__(self, store: BlobStore):  # noqa: D107 - a view: no directory of its own
        self.root = store.root
        self._store = store
        self.created: set[str] = set()

    def put(self, data: bytes) -> str:
        digest, created = self._store._put(data, claim=True)
        if created:
            self.created.add(digest)
        return digest

    def discard(self) -> None:
        """Remove the blobs this batch created that nothing else stored since."""
        self._store._discard(self.created)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
