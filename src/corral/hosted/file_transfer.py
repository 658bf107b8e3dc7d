"""Files of any size in and out of a sandbox, in chunks, through the agent protocol only.

One file operation of the protocol carries at most 16 MiB. Bigger files are
read in chunks through a command's output (``dd | base64``, each chunk small
enough for the sandbox's stdout_limit) and written by appending chunks from a
command's stdin to a temporary file that is renamed into place at the end, so
a reader never sees half a file. Used by uploads, downloads and snapshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import shlex
from collections.abc import AsyncIterator

from corral.errors import FileOperationError, InvalidInputError
from corral.protocol import wire
from corral.sandbox import AsyncSandbox

#: Largest chunk read through one command (its base64 must also fit the sandbox's stdout_limit).
READ_CHUNK_BYTES = 3 * 1024 * 1024
MIN_READ_CHUNK_BYTES = 3 * 1024
#: Chunks written through one command's stdin.
WRITE_CHUNK_BYTES = wire.MAX_STDIN_BYTES


async def read_chunks(sandbox: AsyncSandbox, path: str) -> AsyncIterator[bytes]:
    """The file's bytes: all at once when the protocol allows, else chunk by chunk."""
    try:
        yield await sandbox.files.read(path)
        return
    except FileOperationError as exc:
        if exc.code != "too_large":
            raise
    chunk = min(READ_CHUNK_BYTES, sandbox.spec.limits.stdout_limit // 4 * 3)
    if chunk < MIN_READ_CHUNK_BYTES:
        raise InvalidInputError(f"{path} is over {wire.MAX_FILE_BYTES} bytes and the sandbox's stdout_limit "
                                f"({sandbox.spec.limits.stdout_limit}) is too small to read it in chunks")
    index = 0
    while True:
        output = await shell(sandbox, f"dd if={shlex.quote(path)} bs={chunk} skip={index} count=1 status=none"
                                      " | base64 -w0")
        part = base64.b64decode(output)
        if part:
            yield part
        if len(part) < chunk:
            return
        index += 1


async def read_whole(sandbox: AsyncSandbox, path: str) -> bytes:
    """The file's bytes, whatever its size."""
    return b"".join([part async for part in read_chunks(sandbox, path)])


async def write_chunks(sandbox: AsyncSandbox, path: str, chunks: AsyncIterator[bytes], mode: int,
                       max_bytes: int) -> int:
    """Create or replace ``path`` with the chunks' bytes (at most ``max_bytes``); the size written.

    Up to WRITE_CHUNK_BYTES is one atomic write; beyond, a temporary file is filled and renamed.
    """
    buffer = bytearray()
    temporary = None
    written = 0
    try:
        async for chunk in chunks:
            written += len(chunk)
            if written > max_bytes:
                raise FileTooLarge(f"{path}: file is over the limit of {max_bytes} bytes")
            buffer += chunk
            while len(buffer) > WRITE_CHUNK_BYTES:
                if temporary is None:
                    temporary = f"{path}.corral-upload-{secrets.token_hex(4)}"
                    await sandbox.files.write(temporary, bytes(buffer[:WRITE_CHUNK_BYTES]), mode=0o600)
                else:
                    await _append(sandbox, temporary, bytes(buffer[:WRITE_CHUNK_BYTES]))
                del buffer[:WRITE_CHUNK_BYTES]
        if temporary is None:
            await sandbox.files.write(path, bytes(buffer), mode=mode)
            return written
        if buffer:
            await _append(sandbox, temporary, bytes(buffer))
        await shell(sandbox, f"chmod {mode:o} -- {shlex.quote(temporary)} && mv -f -- {shlex.quote(temporary)} "
                             f"{shlex.quote(path)}")
        temporary = None
        return written
    finally:
        if temporary is not None:  # a failed or refused upload leaves nothing behind
            with contextlib.suppress(Exception):
                await asyncio.shield(shell(sandbox, f"rm -f -- {shlex.quote(temporary)}"))


async def write_whole(sandbox: AsyncSandbox, path: str, data: bytes, mode: int) -> int:
    """Create or replace ``path`` with ``data``, whatever its size."""
    async def one():
        yield data

    return await write_chunks(sandbox, path, one(), mode, len(data))


class FileTooLarge(InvalidInputError):
    """An upload passed the server's limit on one file."""


async def _append(sandbox: AsyncSandbox, path: str, data: bytes) -> None:
    result = await sandbox.commands.run(f"cat >> {shlex.quote(path)}", stdin=data, timeout=120)
    if not result.ok:
        raise FileOperationError("internal", f"appending to {path} failed (exit {result.exit_code}): "
                                             f"{result.stderr.strip()[-500:]}")


async def shell(sandbox: AsyncSandbox, script: str) -> str:
    """Run a helper command; its output (InvalidInputError if it fails or its output was truncated)."""
    result = await sandbox.commands.run(script, timeout=120)
    if not result.ok:
        raise InvalidInputError(f"{script.split()[0]} failed in the sandbox (exit {result.exit_code}): "
                                f"{result.stderr.strip()[-500:]}")
    if result.stdout_truncated:
        raise InvalidInputError("a helper command's output passed the sandbox's stdout_limit")
    return result.stdout
