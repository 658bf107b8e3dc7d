"""E2B paths inside a sandbox: absolute, or relative to the user's home (``/home/user``, as in E2B)."""

from __future__ import annotations

import datetime
import posixpath
import stat

from corral.models import FileEntry, FileInfo
from corral.protocol import wire
from corral.server.e2b.errors import E2BError

#: envd's entry type of each corral entry kind (``other``: sockets, devices, which envd does not list).
FILE_TYPES = {"file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY", "symlink": "FILE_TYPE_SYMLINK"}
_MODE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def absolute(path: object, what: str = "path") -> str:
    """The absolute, normalized form of an E2B path (E2BError invalid_argument if it cannot name a file)."""
    if not isinstance(path, str) or not path:
        raise E2BError(400, f"{what}: a non-empty path is needed", "invalid_argument")
    problem = wire.path_problem(path)
    if problem:
        raise E2BError(400, f"{what}: {problem}", "invalid_argument")
    return posixpath.normpath(posixpath.join(wire.SANDBOX_HOME, path)).replace("//", "/")


def entry_info(directory: str, entry: FileEntry) -> dict:
    """envd's EntryInfo of an entry of ``directory``."""
    path = posixpath.join(directory, entry.name)
    return {
        "name": entry.name, "type": FILE_TYPES.get(entry.kind, "FILE_TYPE_UNSPECIFIED"), "path": path,
        "size": str(entry.size), "mode": entry.mode,
        "permissions": stat.filemode(_MODE_BITS.get(entry.kind, 0) | entry.mode),
        "owner": "user", "group": "user", "modifiedTime": rfc3339(entry.mtime),
    }


def stat_info(info: FileInfo) -> dict:
    """envd's EntryInfo of what ``files.stat`` found."""
    entry = entry_info(posixpath.dirname(info.path), FileEntry(name=info.name, kind=info.kind, size=info.size,
                                                               mode=info.mode, mtime=info.mtime))
    entry["path"] = info.path
    entry["owner"], entry["group"] = _user(info.uid), _user(info.gid)
    if info.symlink_target is not None:
        entry["symlinkTarget"] = info.symlink_target
    return entry


def _user(uid: int) -> str:
    """The sandbox's one user is ``user`` (as in E2B); root owns the system's files."""
    return "root" if uid == 0 else "user"


def rfc3339(seconds: float) -> str:
    """A Unix time as RFC 3339 in UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
