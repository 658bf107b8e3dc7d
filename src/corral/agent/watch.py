"""Directory watches: inotify (through ctypes, no stdlib wrapper exists) driven by the agent's loop.

``watch_start`` answers ``watch_started`` once the watch is in place, then one
``fs_event`` per change (``create``, ``write``, ``remove``, ``rename``,
``chmod``; ``overflow`` when the kernel's queue overflowed or the watch hit
its directory cap, so events were lost) and ends with ``ack`` when cancelled
(a ``cancel`` naming it) or when the watched directory itself goes away.
With ``recursive`` every directory below is watched too, new ones as they
appear, up to :data:`wire.MAX_WATCH_DIRS`.
"""

from __future__ import annotations

import ctypes
import os
import struct

from corral.agent.files import FileOpError, error_from_os
from corral.agent.libc import libc
from corral.protocol import wire

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
_MASK = (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
         | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")
#: ``create`` events sent at most for what one new directory tree already held (then ``overflow``).
MAX_ANNOUNCED = 10_000
#: Which event a change is reported as (the first bit that matches).
_KINDS = ((IN_CREATE | IN_MOVED_TO, "create"), (IN_MODIFY, "write"), (IN_DELETE, "remove"),
          (IN_MOVED_FROM, "rename"), (IN_ATTRIB, "chmod"))


class DirectoryWatch:
    """One ``watch_start`` request: an inotify instance and the directories it watches."""

    def __init__(self, agent, request):
        self.agent = agent
        self.id = request["id"]
        self.recursive = bool(request.get("recursive"))
        self.root = agent.files.resolve(request.get("path"))
        self.fd = libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise FileOpError("internal", f"inotify: {os.strerror(_errno())}")
        #: watch descriptor -> directory relative to the root ("" for the root)
        self.dirs = {}
        self.overflowed = False
        try:
            with agent.as_user:
                self._add(self.root, "", required=True)
        except BaseException:
            os.close(self.fd)
            raise
        os.set_blocking(self.fd, False)
        agent.watch(self.fd, self.on_readable)
        agent.watches[self.id] = self
        agent.send({"type": "watch_started", "id": self.id})

    def _add(self, path, relative, required=False, announce=False):
        """Watch the directory ``path`` (and, recursively, those below it: a loop, not recursion,
        so a tree of any depth stops at MAX_WATCH_DIRS with an ``overflow``).

        ``announce``: the directory is new, so what is already in it was made before
        its watch existed and inotify will never report it: send a ``create`` for
        each entry found, at most MAX_ANNOUNCED (then an ``overflow``); one made in
        between may be reported twice.
        """
        pending = [(path, relative)]
        announced = 0
        while pending:
            path, relative = pending.pop()
            if len(self.dirs) >= wire.MAX_WATCH_DIRS:
                self._overflow()
                return
            wd = libc().inotify_add_watch(self.fd, os.fsencode(path), _MASK)
            if wd < 0:
                if required:
                    raise error_from_os(OSError(_errno(), os.strerror(_errno())), path)
                continue  # gone already, or not readable: nothing to watch there
            self.dirs[wd] = relative
            if required:
                self.root_wd = wd
                required = False
            if not self.recursive:
                continue
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                is_dir = entry.is_dir(follow_symlinks=False)
                if announce:
                    if announced < MAX_ANNOUNCED:
                        announced += 1
                        self.agent.send({"type": "fs_event", "id": self.id, "kind": "create",
                                         "name": _join(relative, entry.name), "is_dir": is_dir})
                    else:
                        self._overflow()
                if is_dir:
                    pending.append((entry.path, _join(relative, entry.name)))

    def _overflow(self):
        if not self.overflowed:
            self.overflowed = True
            self.agent.send({"type": "fs_event", "id": self.id, "kind": "overflow", "name": "", "is_dir": False})

    def on_readable(self):
        """Turn what inotify queued into ``fs_event`` messages."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.cancel()
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if not self._event(wd, mask, os.fsdecode(name)):
                return

    def _event(self, wd, mask, name):
        """Report one inotify event; False once the watch has ended."""
        if mask & IN_Q_OVERFLOW:
            self.overflowed = False
            self._overflow()
            return True
        relative = self.dirs.get(wd)
        if relative is None:
            return True
        if mask & IN_IGNORED:
            del self.dirs[wd]
            if wd == self.root_wd or not self.dirs:  # the root itself is gone
                self.cancel()
                return False
            return True
        if not name:  # the root or a subdirectory itself was removed or moved: its parent reports it
            return True
        path = _join(relative, name)
        is_dir = bool(mask & IN_ISDIR)
        for bits, kind in _KINDS:
            if mask & bits:
                self.agent.send({"type": "fs_event", "id": self.id, "kind": kind, "name": path, "is_dir": is_dir})
                break
        if is_dir and self.recursive and mask & (IN_CREATE | IN_MOVED_TO):
            with self.agent.as_user:
                self._add(os.path.join(self.root, path), path, announce=True)
        return True

    def cancel(self):
        """End the watch: close inotify and answer the request with ``ack``."""
        if self.fd is None:
            return
        self.agent.unwatch(self.fd)
        os.close(self.fd)
        self.fd = None
        self.agent.watches.pop(self.id, None)
        self.agent.send({"type": "ack", "id": self.id})


def _join(relative, name):
    return f"{relative}/{name}" if relative else name


def _errno():
    return ctypes.get_errno()
