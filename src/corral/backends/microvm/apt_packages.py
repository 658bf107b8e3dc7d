"""Debian packages for the guest: dependency closures and a shared cache of .deb files.

A closure is what ``apt-get -s install`` would install on an empty system: apt
simulates against an empty dpkg status file, so nothing of the host is assumed
installed. Only packages from Debian's own archives (origin ``Debian`` or
``Debian-Security``) are accepted: a third-party repository configured on the
host (NodeSource, ...) can neither win a version nor slip into the image.
The downloads go through the host's apt (its sources, proxy and signature
checks) in one batched ``apt-get download``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.backends.microvm import host_tools
from corral.errors import IsolationUnavailableError

APT_LISTS = Path("/var/lib/apt/lists")
#: Origins (``o=`` of a Release file) whose packages may enter the image.
DEBIAN_ORIGINS = frozenset({"Debian", "Debian-Security"})
#: Preferences that make Debian's archives win over any other configured source.
_PREFERENCES = "".join(
    f"Package: *\nPin: release o={origin}\nPin-Priority: 990\n\n" for origin in sorted(DEBIAN_ORIGINS)
)
# "Inst name [old] (version origin:release/suite[, ...] [arch])"
_INST = re.compile(r"^Inst (?P<name>\S+) (?:\[\S+\] )?\((?P<version>\S+) (?P<releases>.*) \[(?P<arch>[^\]]+)\]\)")
_MISSING = re.compile(r"Unable to locate package|has no installation candidate|Version '.*' for '.*' was not found")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, order=True)
class Package:
    """One resolved binary package."""

    name: str
    version: str
    arch: str

    @property
    def spec(self) -> str:
        """``name=version``, as ``apt-get download`` takes it."""
        return f"{self.name}={self.version}"

    @property
    def deb_name(self) -> str:
        """The file name ``apt-get download`` gives the package (``:`` of the epoch quoted)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


class IndexMissingPackages(Exception):
    """apt's index does not know a requested package (or version): ``apt-get update`` may help."""


def parse_simulation(output: str) -> list[Package]:
    """The packages an ``apt-get -s install`` would install, in apt's order.

    Raises ``IsolationUnavailableError`` for a package from outside Debian's archives.
    """
    packages = []
    for line in output.splitlines():
        match = _INST.match(line)
        if not match:
            continue
        origins = {release.split(":", 1)[0].strip() for release in match["releases"].split(",")}
        if not origins & DEBIAN_ORIGINS:
            raise IsolationUnavailableError(
                "microvm", f"guest image: {match['name']} {match['version']} would come from {match['releases']}, "
                           "not from Debian's archives")
        packages.append(Package(match["name"], match["version"], match["arch"]))
    return packages


def resolve(names: Iterable[str]) -> list[Package]:
    """The closure of ``names`` (no recommends) on an empty system, from the host's apt index."""
    with tempfile.TemporaryDirectory(prefix="corral-apt-") as scratch:
        status = Path(scratch, "status")
        status.write_text("")
        preferences = Path(scratch, "preferences")
        preferences.write_text(_PREFERENCES)
        argv = [host_tools.tool("apt-get"), "-s", "-q", "-o", f"Dir::State::status={status}",
                "-o", f"Dir::Etc::Preferences={preferences}", "-o", "Dir::Etc::PreferencesParts=/nonexistent",
                "install", "--no-install-recommends", *names]
        result = subprocess.run(argv, capture_output=True, text=True, check=False,
                                env={**os.environ, "LC_ALL": "C"})
    if result.returncode != 0:
        if _MISSING.search(result.stderr):
            raise IndexMissingPackages(result.stderr.strip())
        raise host_tools.step_failed("resolving packages", result)
    return parse_simulation(result.stdout)


def index_identity() -> list[tuple[str, int, int]]:
    """Name, size and mtime of every package index file: changes whenever ``apt-get update`` changes one."""
    entries = []
    for path in sorted(APT_LISTS.glob("*_Packages*")):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return entries


def update_index() -> None:
    """Run ``apt-get update`` (needs root)."""
    if os.geteuid() != 0:
        raise IsolationUnavailableError(
            "microvm", "guest image: apt's package index is missing packages or out of date; run `apt-get update` as root")
    host_tools.run("apt-get update", ["apt-get", "update", "-q"], nice=True)


def download(packages: Iterable[Package], cache: Path, progress: Progress | None = None) -> dict[Package, Path]:
    """Make sure every package's .deb is in ``cache`` (one ``apt-get download`` for the missing ones).

    Returns each package's file. Raises ``IndexMissingPackages`` if the mirror no
    longer has a version (the index is older than the archive).
    """
    packages = sorted(set(packages))
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    missing = [package for package in packages if not (cache / package.deb_name).is_file()]
    if progress:
        progress(f"downloading {len(missing)} of {len(packages)} .debs", 0, len(missing))
    if missing:
        _download_into(cache, missing)
    if progress:
        progress(f"downloaded {len(missing)} .debs", len(missing), len(missing))
    return {package: cache / package.deb_name for package in packages}


def _download_into(cache: Path, missing: list[Package]) -> None:
    # A private directory per download: concurrent builders never see each other's partial files.
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        _let_apt_sandbox_write(staging)
        argv = [host_tools.tool("apt-get"), "download", "-q", *(package.spec for package in missing)]
        result = subprocess.run(argv, cwd=staging, capture_output=True, text=True, check=False,
                                env={**os.environ, "LC_ALL": "C"})
        if result.returncode != 0:
            if re.search(r"404\s+Not Found|Unable to locate package|Can't find a source", result.stderr):
                raise IndexMissingPackages(result.stderr.strip())
            raise host_tools.step_failed(f"apt-get download ({len(missing)} packages)", result)
        for package in missing:
            downloaded = staging / package.deb_name
            if not downloaded.is_file():
                raise IsolationUnavailableError("microvm", f"guest image: apt-get download did not write {package.deb_name}")
            downloaded.chmod(0o644)
            os.replace(downloaded, cache / package.deb_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _let_apt_sandbox_write(directory: Path) -> None:
    """As root, apt downloads as its ``_apt`` user, which must be able to write the target directory."""
    if os.geteuid() != 0:
        return
    try:
        os.chown(directory, pwd.getpwnam("_apt").pw_uid, -1)
    except KeyError:
        pass
