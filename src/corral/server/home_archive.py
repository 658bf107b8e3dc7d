"""A sandbox's home directory as one tar stream, moved in bounded chunks through the agent protocol.

A pause needs every file, directory and symlink under the home with its mode,
hard links kept as links and sparse files kept sparse, for any tree shape, and
a resume must need no more space than the home used. GNU tar in the sandbox
does exactly that (``--sparse``; hard links and long names are part of the
format), so the home is captured as one archive made *inside* the sandbox.

The archive never passes through the sandbox's disk whole, nor through the
server's memory: in the sandbox, a producer cuts tar's output into numbered
chunk files in a private directory under ``/tmp`` and waits while two are
unread; the server reads each chunk (one file operation), stores it as a blob
and removes it. A restore runs the reverse: the server writes chunk files, a
consumer in the sandbox feeds them in order to ``tar --extract``. At most
three chunks are in ``/tmp`` at once (its own tmpfs, as large as the disk
limit), and a chunk is at most an eighth of the disk limit, so both fit in any
sandbox. A capture larger than :func:`archive_bound` (the sandbox's disk
limit, twice, plus tar's headers) is refused before anything stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shlex

from corral.errors import InvalidInputError
from corral.sandbox import AsyncSandbox
from corral.server.blobs import BlobStore
from corral.server.file_transfer import shell

#: Largest chunk: one file operation of the protocol carries it with room to spare.
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MIN_CHUNK_BYTES = 64 * 1024
#: What tar adds to the data: headers (512 bytes per entry, more for long names) and padding.
HEADER_ALLOWANCE_BYTES = 16 * 1024 * 1024
#: tar's exit statuses a capture accepts: 1 is "a file changed as we read it" (user code kept writing).
_CAPTURE_OK = frozenset({0, 1})
_POLL = "sleep 0.005"
#: Longest path a restore can create (Linux's PATH_MAX, less its terminating NUL).
MAX_PATH_BYTES = 4095


def chunk_bytes(sandbox: AsyncSandbox) -> int:
    """The chunk size for ``sandbox``: three chunks must fit in its /tmp."""
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, sandbox.spec.limits.writable_mb * 1024 * 1024 // 8))


def archive_bound(sandbox: AsyncSandbox) -> int:
    """The largest archive of ``sandbox``'s home a snapshot takes: what its disk limit lets it hold."""
    return 2 * sandbox.spec.limits.writable_mb * 1024 * 1024 + HEADER_ALLOWANCE_BYTES


async def capture(sandbox: AsyncSandbox, blobs: BlobStore, root: str) -> dict:
    """Archive ``root`` into blobs: ``{"chunks": [digest...], "size", "file_count", "file_bytes"}``.

    ``size`` is the archive's, ``file_bytes`` the regular files' (a hard-linked file counted once).

    InvalidInputError (the sandbox is left as it was) if tar fails or the archive passes
    :func:`archive_bound`.
    """
    work, chunk = _work_dir(), chunk_bytes(sandbox)
    bound = archive_bound(sandbox)
    w = shlex.quote(work)
    producer = (
        f"cd {shlex.quote(root)} || exit 1; n=$(find . -xdev -type f -printf . | wc -c); "
        f"b=$(find . -xdev -type f -print0 | du -cb --apparent-size --files0-from=- 2>/dev/null | tail -n 1 | "
        f"cut -f 1); m=$(find . -xdev -print0 | tr '\\n\\0' '_\\n' | LC_ALL=C wc -L); "
        f"echo \"$n ${{b:-0}} $m\" > {w}/files; "
        f"( tar --create --sparse --numeric-owner --file=- . 2> {w}/err; {_status(w)} ) | ( i=0; "
        f"while :; do while [ -e {w}/c.$((i - 2)) ]; do {_POLL}; done; "
        f"head -c {chunk} > {w}/t; n=$(stat -c %s {w}/t); mv {w}/t {w}/c.$i; "
        f'[ "$n" -lt {chunk} ] && break; i=$((i + 1)); done )'
    )
    pid = await _start(sandbox, work, producer)
    digests: list[str] = []
    size = 0
    try:
        for index in itertools.count():
            ready = await sandbox.commands.run(
                f"rm -f {w}/c.{index - 1}; until [ -e {w}/c.{index} ]; do "
                f"kill -0 {pid} 2>/dev/null || [ -e {w}/c.{index} ] || exit 3; {_POLL}; done", timeout=120)
            if not ready.ok:  # the producer ended without this chunk: tar failed (its message says why)
                break
            data = await sandbox.files.read(f"{work}/c.{index}")
            size += len(data)
            if size > bound:
                raise InvalidInputError(
                    f"cannot pause: the home directory's archive passed {bound} bytes, the most a snapshot of "
                    f"this sandbox holds (twice its disk limit of {sandbox.spec.limits.writable_mb} MB, plus tar's "
                    "headers); remove files first")
            if data:
                digests.append(await asyncio.to_thread(blobs.put, data))
            if len(data) < chunk:
                break
        status, files, error = await _finish(sandbox, work, pid)
        if status not in _CAPTURE_OK or not ready.ok:
            raise InvalidInputError(f"cannot pause: archiving the home directory failed (tar exit {status}): {error}")
        file_count, file_bytes, longest = (int(number) for number in (files.split() + ["0", "0", "0"])[:3])
        if len(root) + longest > MAX_PATH_BYTES:  # tar archives such a path but cannot extract it
            raise InvalidInputError(f"cannot pause: a path under {root} is {len(root) + longest} bytes long, over "
                                    f"the {MAX_PATH_BYTES} bytes a restore can create; shorten it first")
        return {"chunks": digests, "size": size, "file_count": file_count, "file_bytes": file_bytes}
    finally:
        await _clean(sandbox, work, pid)


async def restore(sandbox: AsyncSandbox, blobs: BlobStore, root: str, chunks: list[str]) -> None:
    """Extract the archive of :func:`capture` (its chunk digests, in order) into ``root``."""
    work = _work_dir()
    w = shlex.quote(work)
    consumer = (
        f"cd {shlex.quote(root)} || exit 1; ( i=0; while :; do "
        f"until [ -e {w}/c.$i ] || [ -e {w}/end ]; do {_POLL}; done; [ -e {w}/c.$i ] || break; "
        f"cat {w}/c.$i || exit 1; rm -f {w}/c.$i; i=$((i + 1)); done ) | "
        f"tar --extract --preserve-permissions --no-same-owner --file=- 2> {w}/err; {_status(w)}"
    )
    pid = await _start(sandbox, work, consumer)
    try:
        for index, digest in enumerate(chunks):
            await shell(sandbox, f"while [ -e {w}/c.{index - 2} ] && [ ! -e {w}/tar.status ]; do {_POLL}; done; "
                                 f"[ ! -e {w}/tar.status ] || {{ cat {w}/err >&2; exit 3; }}")
            await sandbox.files.write(f"{work}/c.{index}", await asyncio.to_thread(blobs.get, digest))
        await sandbox.files.write(f"{work}/end", b"")
        status, _, error = await _finish(sandbox, work, pid)
        if status != 0:
            raise InvalidInputError(f"restoring the home directory failed (tar exit {status}): {error}")
    finally:
        await _clean(sandbox, work, pid)


def _status(w: str) -> str:
    """Record the last command's exit status, atomically (a reader never sees an empty file)."""
    return f"echo $? > {w}/s.tmp && mv {w}/s.tmp {w}/tar.status"


def _work_dir() -> str:
    return f"/tmp/.corral-archive-{secrets.token_hex(6)}"


async def _start(sandbox: AsyncSandbox, work: str, script: str) -> int:
    await shell(sandbox, f"mkdir -m 700 -- {shlex.quote(work)}")
    started = await sandbox.commands.start(f"exec bash -c {shlex.quote(script)} > /dev/null 2>&1")
    return started.pid


async def _finish(sandbox: AsyncSandbox, work: str, pid: int) -> tuple[int, str, str]:
    """(tar's exit status, "files bytes" counted, tar's messages), once the helper ``pid`` is done."""
    w = shlex.quote(work)
    output = await shell(sandbox, f"until [ -e {w}/tar.status ]; do kill -0 {pid} 2>/dev/null || break; {_POLL}; "
                                  f"done; cat {w}/tar.status 2>/dev/null || echo 2; cat {w}/files 2>/dev/null || "
                                  f"echo 0 0 0; tail -c 1500 {w}/err 2>/dev/null")
    status, files, error = (output.split("\n", 2) + ["", ""])[:3]
    return int(status.strip() or 2), files, error.strip()


async def _clean(sandbox: AsyncSandbox, work: str, pid: int) -> None:
    """Stop the helper (if it still runs) and remove its directory, whatever happened."""
    script = f"kill -- -{pid} 2>/dev/null; kill {pid} 2>/dev/null; rm -rf -- {shlex.quote(work)}"
    with contextlib.suppress(Exception):  # a sandbox that broke meanwhile has nothing left to clean
        await asyncio.shield(shell(sandbox, script))
