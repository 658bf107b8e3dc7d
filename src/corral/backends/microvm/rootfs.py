"""The guest's root file system: Debian packages unpacked, the agent bundle, bytecode, then ext4.

No maintainer script runs, so what they would have done is done here: the
merged-/usr symlinks, ``sh``/``awk`` and the other alternatives the image needs,
the CA bundle, the dynamic linker cache and Python bytecode (compiled by the
host's Debian python, the same version: the root is read-only in the guest).
``mke2fs -d`` turns the tree into an ext4 image without a journal and without
mounting anything; it keeps the files' owners and mtimes (which the ``.pyc``
headers check).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from corral.backends.microvm import host_tools
from corral.errors import IsolationUnavailableError

#: Root file system packages; apt adds their dependency closure.
PACKAGES = ("python3", "python3-pip", "bash", "coreutils", "dash", "grep", "sed", "findutils", "procps", "tar",
            "gzip", "nodejs", "ca-certificates", "npm", "g++")
#: Python version of the guest (Debian 12's python3); the host's /usr/bin/python3 must match for bytecode.
PYTHON_VERSION = "3.11"
#: Not unpacked: nobody reads them in a sandbox.
_EXCLUDED = ("./usr/share/doc", "./usr/share/man", "./usr/share/info", "./usr/share/locale", "./usr/share/lintian")
#: Links the packages' postinst scripts (update-alternatives, ...) would create: link -> target.
_LINKS = {"usr/bin/sh": "dash", "usr/bin/awk": "mawk", "usr/bin/which": "which.debianutils",
          "usr/lib/ssl/cert.pem": "/etc/ssl/certs/ca-certificates.crt"}
_MERGED_USR = ("bin", "sbin", "lib", "lib64")
#: Empty directories of the root (mode); /home/user is created by the builder with the guest user as owner.
_DIRECTORIES = {"opt/corral": 0o755, "tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755,
                "run/corral": 0o755, "root": 0o700, "etc/ssl/certs": 0o755}
_NOT_COMPILED = r"/(test|tests|idlelib|lib2to3|tkinter|turtledemo)/"


def prepare(root: Path) -> None:
    """An empty root with the merged-/usr symlinks (``/bin`` -> ``usr/bin``, ...), before anything is unpacked."""
    for name in _MERGED_USR:
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(f"usr/{name}")


def unpack(debs: Iterable[Path], root: Path) -> None:
    """Unpack .debs into a ``prepare``d root, keeping its directory symlinks."""
    tar = [host_tools.tool("tar"), "-x", "--keep-directory-symlink", "-C", str(root),
           *(f"--exclude={path}" for path in _EXCLUDED)]
    for deb in debs:
        with subprocess.Popen([host_tools.tool("dpkg-deb"), "--fsys-tarfile", str(deb)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as unpacker:
            extracted = subprocess.run(tar, stdin=unpacker.stdout, capture_output=True, check=False)
            unpacker.stdout.close()  # type: ignore[union-attr]
            unpacker_error = unpacker.stderr.read()  # type: ignore[union-attr]
        if unpacker.returncode != 0:
            raise host_tools.step_failed(f"dpkg-deb {deb.name}",
                                         subprocess.CompletedProcess([], unpacker.returncode, b"", unpacker_error))
        if extracted.returncode != 0:
            raise host_tools.step_failed(f"unpacking {deb.name}", extracted)


def configure(root: Path, runtime: Path, agent_config: dict, config_path: str, home: str,
              user: tuple[int, int]) -> None:
    """What the maintainer scripts would have done, plus corral's agent bundle and configuration."""
    for name, mode in _DIRECTORIES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name).chmod(mode)
    for link, target in _LINKS.items():
        path = root / link
        path.unlink(missing_ok=True)
        path.symlink_to(target)
    _ca_bundle(root)
    _agent_bundle(root, runtime, agent_config, config_path)
    home_dir = root / home.lstrip("/")
    home_dir.mkdir(parents=True, exist_ok=True)
    home_dir.chmod(0o755)
    os.chown(home_dir, *user)
    host_tools.run("ldconfig", ["ldconfig", "-r", str(root)])


def _ca_bundle(root: Path) -> None:
    """/etc/ssl/certs/ca-certificates.crt, as update-ca-certificates would write it."""
    certificates = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    if not certificates:
        raise IsolationUnavailableError("microvm", "guest image: the ca-certificates package has no certificates")
    bundle = b"".join(path.read_bytes().rstrip(b"\n") + b"\n" for path in certificates)
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(bundle)


def _agent_bundle(root: Path, runtime: Path, agent_config: dict, config_path: str) -> None:
    """The agent's sources under /opt/corral, corral's /etc files, and the agent's start-up configuration."""
    target = root / "opt/corral"
    shutil.copy2(runtime / "agent.py", target / "agent.py")
    shutil.copytree(runtime / "corral", target / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    for path in sorted((runtime / "etc").iterdir()):
        destination = root / "etc" / path.name
        destination.unlink(missing_ok=True)
        shutil.copy2(path, destination)
    (root / config_path.lstrip("/")).write_text(json.dumps(agent_config, sort_keys=True) + "\n")


def compile_bytecode(root: Path) -> None:
    """Compile the standard library, dist-packages and the agent with the host's Debian python."""
    directories = [root / "usr/lib" / f"python{PYTHON_VERSION}", root / "usr/lib/python3/dist-packages",
                   root / "opt/corral"]
    host_tools.run("compiling bytecode",
                   [host_tools.HOST_PYTHON, "-I", "-m", "compileall", "-q", "-j0", "-x", _NOT_COMPILED,
                    "-s", str(root), "-p", "/", *(str(d) for d in directories if d.is_dir())], nice=True)


def host_python_version() -> str:
    """``major.minor.micro`` of the host's Debian python (``IsolationUnavailableError`` if it is unusable)."""
    result = host_tools.run("checking the host's python", [host_tools.HOST_PYTHON, "-I", "-c",
                            "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    return result.stdout.decode().strip()


def make_ext4(root: Path, target: Path) -> None:
    """Write ``root`` as an ext4 image (no journal, no reserved blocks), sized to fit with some room."""
    used = inodes = 0
    for directory, subdirectories, files in os.walk(root):
        for name in [*subdirectories, *files]:
            used += os.lstat(os.path.join(directory, name)).st_blocks * 512
            inodes += 1
    size_mb = used * 12 // 10 // 2**20 + 32
    host_tools.run("mke2fs", ["mke2fs", "-q", "-t", "ext4", "-L", "corral-root", "-O", "^has_journal", "-m", "0",
                              "-N", str(inodes * 12 // 10 + 1024), "-E", "root_owner=0:0", "-d", str(root),
                              str(target), f"{size_mb}M"], nice=True)
