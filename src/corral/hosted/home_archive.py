"""A sandbox's home directory as one tar stream, moved in bounded chunks through the agent protocol.

A pause needs every file, directory and symlink under the home with its mode,
hard links kept as links and sparse files kept sparse, for any tree shape, and
a resume must need no more space than the home used. GNU tar in the sandbox
does exactly that (``--sparse``; hard links and long names are part of the
format), so the home is captured as one archive made *inside* the sandbox.

The archive never passes through the sandbox's disk whole, nor through the
server's memory. Most homes' archives fit one command's output (base64) and
come back in one command; a restore of one chunk is one command reading it on
stdin. Any other size goes the chunked way: in the sandbox, a producer cuts tar's output into numbered
chunk files in a private directory under ``/tmp`` and waits while two are
unread; the server reads each chunk (one file operation), stores it as a blob
and removes it, watching the directory through the agent's file operations
(no process per look). A restore runs the reverse: the server writes chunk files, a
consumer in the sandbox feeds them in order to ``tar --extract``. At most
three chunks are in ``/tmp`` at once (its own tmpfs, as large as the disk
limit), and a chunk is at most an eighth of the disk limit, so both fit in any
sandbox. A capture larger than :func:`archive_bound` (the sandbox's disk
limit, twice, plus tar's headers) is refused before anything stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import secrets
import shlex
import time
from collections.abc import Callable

from corral.errors import FileOperationError, InvalidInputError
from corral.hosted.blobs import BlobStore
from corral.hosted.file_transfer import shell
from corral.sandbox import AsyncSandbox

#: Largest chunk: one file operation of the protocol carries it with room to spare.
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MIN_CHUNK_BYTES = 64 * 1024
#: What tar adds to the data: headers (512 bytes per entry, more for long names) and padding.
HEADER_ALLOWANCE_BYTES = 16 * 1024 * 1024
#: tar's exit statuses a capture accepts: 1 is "a file changed as we read it" (user code kept writing).
_CAPTURE_OK = frozenset({0, 1})
_POLL = "sleep 0.005"
_CREATE = "tar --create --sparse --numeric-owner --file=-"
_EXTRACT = "tar --extract --preserve-permissions --no-same-owner --file=-"
#: Prints "regular files, their bytes (a hard link once), longest path, archive size estimate" of the
#: current directory (the estimate: a header per entry, a long name's extra blocks, allocated data).
_COUNT = ("find . -xdev -printf '%y %i %s %b %p\\0' | LC_ALL=C mawk 'BEGIN { RS = \"\\0\" } "
          '{ p = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", p); l = length(p); if (l > m) m = l; '
          "e += 512; if (l > 99) e += 512 + int((l + 511) / 512) * 512; "
          'if ($1 == "f") { n++; if (!seen[$2]++) { b += $3; d = $4 * 512; '
          "e += int(((d < $3 ? d : $3) + 511) / 512) * 512 } } } "
          "END { printf \"%d %.0f %d %.0f\\n\", n, b, m, e + 10240 }'")
#: A helper that shows no progress this long is taken as stuck.
HELPER_SILENCE_S = 120.0
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
    InvalidInputError (the sandbox is left as it was) if tar fails, the archive passes
    :func:`archive_bound`, or a path is too long to restore.
    """
    return await _capture_small(sandbox, blobs, root) or await _capture_chunked(sandbox, blobs, root)


async def _capture_small(sandbox: AsyncSandbox, blobs: BlobStore, root: str) -> dict | None:
    """Most homes: the whole archive in one command's output (base64); None when it does not fit there."""
    limit = min(chunk_bytes(sandbox), sandbox.spec.limits.stdout_limit // 4 * 3 - 4096)
    if limit < MIN_CHUNK_BYTES:
        return None
    script = (f"cd {shlex.quote(root)} || exit 1; counts=$({_COUNT}); set -- $counts; "
              f'[ "$4" -le {limit} ] || exit 3; set -o pipefail; '  # too big for one answer: no tar here
              f"data=$({_CREATE} . | head -c {limit + 1} | base64 -w0); status=$?; "
              f'printf "%s %s\\n%s" "$status" "$counts" "$data"')
    result = await sandbox.commands.run(script, timeout=HELPER_SILENCE_S)
    if not result.ok or result.stdout_truncated:
        return None
    summary, _, encoded = result.stdout.partition("\n")
    status, file_count, file_bytes, longest, _ = (int(part) for part in summary.split())
    data = base64.b64decode(encoded)
    if len(data) > limit:
        return None  # tar was cut short (SIGPIPE): the chunked way takes it
    _check(root, status, longest, result.stderr.strip()[-1500:])
    chunks = [await asyncio.to_thread(blobs.put, data)] if data else []
    return {"chunks": chunks, "size": len(data), "file_count": file_count, "file_bytes": file_bytes}


async def _capture_chunked(sandbox: AsyncSandbox, blobs: BlobStore, root: str) -> dict:
    """Any home: tar's output cut into chunk files under /tmp by a helper, read and removed one by one."""
    work, chunk, bound = _work_dir(), chunk_bytes(sandbox), archive_bound(sandbox)
    w = shlex.quote(work)
    producer = (
        f"mkdir -m 700 {w} || exit 1; "
        f"cd {shlex.quote(root)} || {{ echo 2 0 0 0 0 > {w}/d; mv {w}/d {w}/done; exit; }}; "
        f"( {_COUNT} > {w}/counts ) & counting=$!; "  # counted while tar runs (two cores)
        f"( {_CREATE} . 2> {w}/err; echo $? > {w}/tar.status ) | ( i=0; "
        f"while :; do while [ -e {w}/c.$((i - 2)) ]; do {_POLL}; done; "
        f"head -c {chunk} > {w}/t && n=$(stat -c %s {w}/t) && mv {w}/t {w}/c.$i || break; "
        f'[ "$n" -lt {chunk} ] && break; i=$((i + 1)); done ); wait $counting; '
        f'echo "$(cat {w}/tar.status 2>/dev/null || echo 2) $(cat {w}/counts 2>/dev/null || echo 0 0 0 0)" > {w}/d '
        f"&& mv {w}/d {w}/done"
    )
    pid = (await sandbox.commands.start(f"exec > /dev/null 2>&1; {producer}")).pid
    digests: list[str] = []
    size = 0
    finished = False
    try:
        for index in itertools.count():
            names = await _wait(sandbox, work, lambda names, name=f"c.{index}": name in names or "done" in names)
            if f"c.{index}" not in names:
                break  # the producer ended without it: tar failed, and "done" says how
            data = await sandbox.files.read(f"{work}/c.{index}")
            await sandbox.files.remove(f"{work}/c.{index}")
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
        await _wait(sandbox, work, lambda names: "done" in names)
        finished = True
        done = await _text(sandbox, work, "done")
        status, file_count, file_bytes, longest, _ = (int(part) for part in done.split())
        _check(root, status, longest, await _text(sandbox, work, "err") if status not in _CAPTURE_OK else "")
        return {"chunks": digests, "size": size, "file_count": file_count, "file_bytes": file_bytes}
    finally:
        await _clean(sandbox, work, None if finished else pid)


def _check(root: str, status: int, longest: int, error: str) -> None:
    """Refuse a capture tar failed, or one with a path too long to restore (InvalidInputError)."""
    if status not in _CAPTURE_OK:
        raise InvalidInputError(f"cannot pause: archiving the home directory failed (tar exit {status}): {error}")
    if len(root) + longest > MAX_PATH_BYTES:  # tar archives such a path but cannot extract it
        raise InvalidInputError(f"cannot pause: a path under {root} is {len(root) + longest} bytes long, over "
                                f"the {MAX_PATH_BYTES} bytes a restore can create; shorten it first")


async def restore(sandbox: AsyncSandbox, blobs: BlobStore, root: str, chunks: list[str]) -> None:
    """Extract the archive of :func:`capture` (its chunk digests, in order) into ``root``."""
    if len(chunks) <= 1:  # most homes: one command, the archive on its stdin
        archive = await asyncio.to_thread(blobs.get, chunks[0]) if chunks else b""
        result = await sandbox.commands.run(f"cd {shlex.quote(root)} && {_EXTRACT}", stdin=archive,
                                            timeout=HELPER_SILENCE_S)
        if not result.ok:
            raise InvalidInputError(f"restoring the home directory failed (tar exit {result.exit_code}): "
                                    f"{result.stderr.strip()[-1500:]}")
        return
    work = _work_dir()
    w = shlex.quote(work)
    consumer = (
        f"mkdir -m 700 {w} || exit 1; cd {shlex.quote(root)} || {{ echo 2 > {w}/d; mv {w}/d {w}/done; exit; }}; "
        f"( i=0; while :; do until [ -e {w}/c.$i ] || [ -e {w}/end ]; do {_POLL}; done; [ -e {w}/c.$i ] || break; "
        f"cat {w}/c.$i || exit 1; rm -f {w}/c.$i; i=$((i + 1)); done ) | "
        f"{_EXTRACT} 2> {w}/err; "
        f"echo $? > {w}/d && mv {w}/d {w}/done"
    )
    pid = (await sandbox.commands.start(f"exec > /dev/null 2>&1; {consumer}")).pid
    finished = False
    try:
        names = await _wait(sandbox, work, lambda names: True)  # its directory exists
        for index, digest in enumerate(chunks):
            if index >= 2:  # at most two chunks wait in /tmp
                names = await _wait(sandbox, work, lambda names, old=f"c.{index - 2}": old not in names
                                    or "done" in names)
            if "done" in names:
                break  # tar ended early: "done" says why
            await sandbox.files.write(f"{work}/c.{index}", await asyncio.to_thread(blobs.get, digest))
        else:
            await sandbox.files.write(f"{work}/end", b"")
        await _wait(sandbox, work, lambda names: "done" in names)
        finished = True
        status = int(await _text(sandbox, work, "done"))
        if status != 0:
            raise InvalidInputError(f"restoring the home directory failed (tar exit {status}): "
                                    f"{await _text(sandbox, work, 'err')}")
    finally:
        await _clean(sandbox, work, None if finished else pid)


def _work_dir() -> str:
    return f"/tmp/.corral-archive-{secrets.token_hex(6)}"


async def _wait(sandbox: AsyncSandbox, work: str, ready: Callable[[set[str]], bool]) -> set[str]:
    """The names in ``work`` once ``ready`` says so, polled through the agent (no process per look).

    InvalidInputError when nothing happens for HELPER_SILENCE_S (the helper is stuck or gone).
    """
    delay, deadline = 0.001, time.monotonic() + HELPER_SILENCE_S
    while True:
        try:
            names = {entry.name for entry in await sandbox.files.list(work)}
        except FileOperationError as exc:
            if exc.code != "not_found":
                raise
            names = None  # the helper has not made its directory yet
        if names is not None and ready(names):
            return names
        if time.monotonic() > deadline:
            raise InvalidInputError(f"the archiving helper in the sandbox made no progress for {HELPER_SILENCE_S:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


async def _text(sandbox: AsyncSandbox, work: str, name: str) -> str:
    return (await sandbox.files.read(f"{work}/{name}"))[-1500:].decode("utf-8", "replace").strip()


async def _clean(sandbox: AsyncSandbox, work: str, pid: int | None) -> None:
    """Stop the helper ``pid`` if it may still run, and remove its directory, whatever happened."""
    with contextlib.suppress(Exception):  # a sandbox that broke meanwhile has nothing left to clean
        if pid is not None:
            await asyncio.shield(shell(sandbox, f"kill -- -{pid} 2>/dev/null; kill {pid} 2>/dev/null; true"))
        await asyncio.shield(sandbox.files.remove(work, recursive=True))
