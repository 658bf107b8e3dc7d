"""File operations, done by the agent inside the sandbox.

Paths are resolved in the sandbox's own mount namespace: relative paths are
taken from the sandbox's home, and no host path is mounted writable, so
neither ``..`` nor a symlink can reach a host file. The host never opens a
path the sandbox chose.
"""

from __future__ import annotations

import binascii
import errno
import os
import stat

from corral.protocol import wire

_ERRNO_CODES = {
    errno.ENOENT: "not_found",
    errno.EEXIST: "exists",
    errno.EISDIR: "is_directory",
    errno.ENOTDIR: "not_directory",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "read_only",
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "no_space",
    errno.EFBIG: "too_large",
    errno.ENOTEMPTY: "exists",
    errno.ELOOP: "invalid",
    errno.ENAMETOOLONG: "invalid",
    errno.EXDEV: "invalid",
}


class FileOpError(Exception):
    """A file operation failed; ``code`` is a protocol error code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def error_from_os(exc, path):
    """Translate an OSError into a FileOpError naming the sandbox path."""
    code = _ERRNO_CODES.get(exc.errno, "internal")
    return FileOpError(code, f"{path}: {exc.strerror or exc}")


class Files:
    """File operations rooted at the sandbox's home directory."""

    def __init__(self, home):
        self.home = home

    def resolve(self, path):
        """Absolute, normalized sandbox path for ``path`` (relative ones start at home)."""
        problem = wire.path_problem(path)
        if problem:
            raise FileOpError("invalid", problem)
        return os.path.normpath(os.path.join(self.home, path))

    def write(self, path, data_b64, mode):
        """Atomically create or replace a file; parent directories are created."""
        target = self.resolve(path)
        data = _decode(data_b64)
        if len(data) > wire.MAX_FILE_BYTES:
            raise FileOpError("too_large", f"{path}: file of {len(data)} bytes exceeds {wire.MAX_FILE_BYTES}")
        temporary = f"{target}.corral-{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
            if os.path.isdir(target):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o7777)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, mode & 0o7777)
            finally:
                os.close(fd)
            os.replace(temporary, target)
        except OSError as exc:
            _remove_quietly(temporary)
            raise error_from_os(exc, path) from None
        return len(data)

    def read(self, path):
        """Whole contents of a regular file, base64-encoded."""
        target = self.resolve(path)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "Is a directory")
                if not stat.S_ISREG(info.st_mode):
                    raise FileOpError("invalid", f"{path}: not a regular file")
                if info.st_size > wire.MAX_FILE_BYTES:
                    raise FileOpError("too_large", f"{path}: file of {info.st_size} bytes exceeds {wire.MAX_FILE_BYTES}")
                chunks = []
                total = 0
                while True:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > wire.MAX_FILE_BYTES:
                        raise FileOpError("too_large", f"{path}: file grew past {wire.MAX_FILE_BYTES} bytes")
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError as exc:
            raise error_from_os(exc, path) from None
        return binascii.b2a_base64(b"".join(chunks), newline=False).decode()

    def list(self, path):
        """Entries of a directory, without following symlinks."""
        target = self.resolve(path)
        entries = []
        try:
            with os.scandir(target) as it:
                for entry in it:
                    info = entry.stat(follow_symlinks=False)
                    entries.append(
                        {
                            "name": entry.name,
                            "kind": _kind(info.st_mode),
                            "size": info.st_size,
                            "mode": stat.S_IMODE(info.st_mode),
                            "mtime": info.st_mtime,
                        }
                    )
        except OSError as exc:
            raise error_from_os(exc, path) from None
        entries.sort(key=lambda item: item["name"])
        return entries

    def stat(self, path):
        """What ``path`` is, without following a symlink (its target is reported instead)."""
        target = self.resolve(path)
        try:
            return entry_info(target)
        except OSError as exc:
            raise error_from_os(exc, path) from None

    def make_dir(self, path, parents):
        """Create a directory (and its missing parents with ``parents``); ``exists`` if something is there."""
        target = self.resolve(path)
        try:
            if parents:
                if os.path.lexists(target):
                    raise FileExistsError(errno.EEXIST, "File exists")
                os.makedirs(target, mode=0o755)
            else:
                os.mkdir(target, 0o755)
            return entry_info(target)
        except OSError as exc:
            raise error_from_os(exc, path) from None

    def rename(self, source, destination):
        """Move ``source`` to ``destination`` (a file there is replaced); returns the moved entry."""
        old, new = self.resolve(source), self.resolve(destination)
        if old in ("/", self.home):
            raise FileOpError("invalid", f"{source}: refusing to move the sandbox's root or home")
        try:
            os.rename(old, new)
            return entry_info(new)
        except OSError as exc:
            raise error_from_os(exc, f"{source} -> {destination}") from None

    def remove(self, path, recursive):
        """Remove a file or symlink, or a directory (its whole tree if ``recursive``)."""
        target = self.resolve(path)
        if target in ("/", self.home):
            raise FileOpError("invalid", f"{path}: refusing to remove the sandbox's root or home")
        try:
            info = os.lstat(target)
            if stat.S_ISDIR(info.st_mode):
                if recursive:
                    remove_tree(target)
                else:
                    os.rmdir(target)
            else:
                os.unlink(target)
        except OSError as exc:
            raise error_from_os(exc, path) from None


def entry_info(path):
    """The ``file_stat`` entry of an absolute path (``lstat``: a symlink is described, not followed)."""
    info = os.lstat(path)
    target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return {
        "name": os.path.basename(path) or "/",
        "path": path,
        "kind": _kind(info.st_mode),
        "size": info.st_size,
        "mode": stat.S_IMODE(info.st_mode),
        "mtime": info.st_mtime,
        "uid": info.st_uid,
        "gid": info.st_gid,
        "symlink_target": target,
    }


def remove_tree(path):
    """Remove ``path`` and everything below it, whatever permissions user code set on the way."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    for entry in os.scandir(path):
        remove_tree(entry.path)
    os.rmdir(path)


def _decode(data_b64):
    try:
        return binascii.a2b_base64(data_b64)
    except (binascii.Error, ValueError):
        raise FileOpError("invalid", "file data is not valid base64") from None


def _kind(mode):
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
