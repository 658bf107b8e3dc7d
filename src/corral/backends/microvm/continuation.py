"""Continuation snapshots: a running VM saved whole (RAM included), resumed later as it was.

Unlike a memory template (taken once from a fresh VM, shared by many clones), a
continuation is one sandbox's state in the middle of its life: its files, its
session interpreters' memory, its background processes. ``pause`` stops the
VM and migrates everything (devices and RAM) to a file in a directory the
caller owns, then kills QEMU; ``resume`` starts a new QEMU that loads it and
continues. A continuation is only valid for the image build and VM command
line it was taken with; ``meta.json`` records them and ``resume`` checks.
The state is written and fsynced under a temporary name and renamed last, so
a directory with ``state`` in it holds a complete snapshot.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path

from corral.backends.microvm import snapshot
from corral.backends.microvm.qemu import VmShape, argv_fingerprint
from corral.backends.microvm.vm import Vm
from corral.errors import InvalidInputError

#: Bump when the layout of a continuation directory changes.
CONTINUATION_FORMAT = 1
_STATE = "state"
_META = "meta.json"


async def pause(vm: Vm, directory: Path, image_build: str) -> None:
    """Save ``vm`` whole into ``directory`` (created; must not hold a snapshot yet) and stop it."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / _STATE).exists():
        raise InvalidInputError(f"{directory} already holds a snapshot")
    partial = directory / f".{_STATE}.partial"
    try:
        await asyncio.to_thread(snapshot.save, vm.files.qmp_socket, partial, with_ram=True)
        meta = {"format": CONTINUATION_FORMAT, "image_build": image_build, "shape": asdict(vm.shape),
                "argv": argv_fingerprint(vm.shape)}
        await asyncio.to_thread(_write_synced, directory / _META, json.dumps(meta).encode())
        os.rename(partial, directory / _STATE)
        await asyncio.to_thread(_sync_directory, directory)
    finally:
        partial.unlink(missing_ok=True)
        await vm.stop()


def read_shape(directory: Path, image_build: str) -> VmShape:
    """The VM shape a continuation needs; InvalidInputError if it is incomplete or of another build."""
    try:
        meta = json.loads((directory / _META).read_text())
        complete = (directory / _STATE).is_file()
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{directory} holds no snapshot: {exc}") from None
    if not complete or meta.get("format") != CONTINUATION_FORMAT:
        raise InvalidInputError(f"{directory} holds no complete snapshot of this corral version")
    shape = VmShape(**meta["shape"])
    if meta["image_build"] != image_build or meta["argv"] != argv_fingerprint(shape):
        raise InvalidInputError(
            f"the snapshot in {directory} was taken with another guest image or QEMU command line "
            f"({meta['image_build']}); it can only be resumed by the corral that took it")
    return shape


def state_path(directory: Path) -> Path:
    """The saved VM in a continuation directory (to load with ``snapshot.load(..., with_ram=True)``)."""
    return directory / _STATE


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
