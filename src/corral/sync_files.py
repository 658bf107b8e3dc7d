"""The synchronous twins of a sandbox's files: ``BasicFiles`` (a cluster session's), ``Files`` and ``FileWatch``.

Used by local sandboxes (:mod:`corral.sync`), hosted ones (:mod:`corral.client.sync`) and cluster
sessions (:mod:`corral.cluster.sync`) alike: each call runs on corral's background loop (:mod:`corral.sync_bridge`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from corral.file_watch import AsyncFileWatch
from corral.models import FileEntry, FileEvent, FileInfo
from corral.sync_bridge import bridge


class BasicFiles:
    """The file calls every sandbox answers (a cluster session's files have just these). See AsyncFiles."""

    def __init__(self, files: Any):
        """Mirror ``files``: an async files object with these methods (``AsyncFiles``, or a hosted or
        cluster sandbox's files)."""
        self._files = files

    def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> int:
        """Create or replace ``path``; returns the bytes written."""
        return bridge.call(self._files.write(path, data, mode=mode))

    def read(self, path: str) -> bytes:
        """The whole contents of a regular file."""
        return bridge.call(self._files.read(path))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file decoded as text."""
        return bridge.call(self._files.read_text(path, encoding))

    def list(self, path: str = ".") -> list[FileEntry]:
        """Entries of a directory."""
        return bridge.call(self._files.list(path))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file or directory."""
        bridge.call(self._files.remove(path, recursive=recursive))


class Files(BasicFiles):
    """Files inside the sandbox: the basic calls and the rest of AsyncFiles. See AsyncFiles."""

    def stat(self, path: str) -> FileInfo:
        """What ``path`` is (a symlink is described, not followed)."""
        return bridge.call(self._files.stat(path))

    def exists(self, path: str) -> bool:
        """True if something is at ``path``."""
        return bridge.call(self._files.exists(path))

    def make_dir(self, path: str, *, parents: bool = False) -> FileInfo:
        """Create a directory (``parents``: with its missing parents)."""
        return bridge.call(self._files.make_dir(path, parents=parents))

    def rename(self, source: str, destination: str) -> FileInfo:
        """Move ``source`` to ``destination``."""
        return bridge.call(self._files.rename(source, destination))

    def watch(self, path: str = ".", *, recursive: bool = False) -> FileWatch:
        """Watch a directory: iterate the returned watch for FileEvents until it is closed."""
        return FileWatch(bridge.call(self._files.watch(path, recursive=recursive)))


class FileWatch:
    """A directory watch: ``for event in watch`` until :meth:`close` (or ``with``). See AsyncFileWatch."""

    def __init__(self, watch: AsyncFileWatch):
        self._async = watch

    def __iter__(self) -> Iterator[FileEvent]:
        return bridge.iterate(aiter(self._async))

    def pending(self) -> list[FileEvent]:
        """The events that arrived and were not consumed yet (without waiting)."""
        return bridge.call(_pending(self._async))

    def close(self) -> None:
        """Stop watching."""
        bridge.call(self._async.close())

    def __enter__(self) -> FileWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _pending(watch: AsyncFileWatch) -> list[FileEvent]:
    return watch.pending()
