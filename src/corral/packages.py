"""Package specifiers users may install, and the command that installs them.

Every package must be pinned (``name==1.2.3`` for pip, ``name@1.2.3`` for npm)
and is checked against a strict pattern, so no path, URL or option can be
smuggled in as a "name". Installs go to the sandbox's home, through the egress
proxy, which for the duration also allows the package index's host.
"""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

from corral.errors import InvalidInputError

_PIP_SPEC = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9][A-Za-z0-9.+!_-]*")
_NPM_SPEC = re.compile(
    r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*@\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
)

DEFAULT_INDEX = {"python": "https://pypi.org/simple", "javascript": "https://registry.npmjs.org"}
#: Hosts the default indexes serve files from, besides their own.
_FILE_HOSTS = {"pypi.org": ["files.pythonhosted.org"]}
MAX_PACKAGES = 64


def check_packages(packages: object, language: str) -> list[str]:
    """Validated package specifiers for ``language``; raise InvalidInputError naming the bad one."""
    if isinstance(packages, str) or not isinstance(packages, (list, tuple)):
        raise InvalidInputError("packages must be a list of pinned specifiers, e.g. ['requests==2.32.3']")
    if not packages:
        raise InvalidInputError("give at least one package")
    if len(packages) > MAX_PACKAGES:
        raise InvalidInputError(f"at most {MAX_PACKAGES} packages per install")
    if language not in DEFAULT_INDEX:
        raise InvalidInputError(f"packages can be installed for python (pip) and javascript (npm), not {language}")
    pattern, example = (_PIP_SPEC, "name==1.2.3") if language == "python" else (_NPM_SPEC, "name@1.2.3")
    for spec in packages:
        if not isinstance(spec, str) or not pattern.fullmatch(spec):
            raise InvalidInputError(
                f"{spec!r} is not a pinned {('pip' if language == 'python' else 'npm')} package: use {example} "
                "(no paths, URLs, options or unpinned versions)"
            )
    return list(packages)


def check_index(index_url: str | None, language: str) -> str:
    """The package index URL to use (http or https, no credentials)."""
    url = index_url or DEFAULT_INDEX[language]
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password
        or any(ch.isspace() or ord(ch) < 32 for ch in url)
    ):
        raise InvalidInputError(f"index_url must be an http(s) URL without credentials or spaces, got {url!r}")
    return url


def index_hosts(index_url: str) -> list[tuple[str, int]]:
    """(host, port) pairs an install from ``index_url`` needs to reach."""
    parts = urlsplit(index_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return [(parts.hostname, port), *((host, 443) for host in _FILE_HOSTS.get(parts.hostname, []))]


def install_command(packages: list[str], language: str, index_url: str) -> str:
    """The shell command that installs ``packages`` into the sandbox's home."""
    specs = " ".join(shlex.quote(spec) for spec in packages)
    url = shlex.quote(index_url)
    if language == "python":
        trusted = f" --trusted-host {shlex.quote(urlsplit(index_url).hostname)}" if index_url.startswith("http://") else ""
        return (
            "python3 -m pip install --user --break-system-packages --no-input --disable-pip-version-check "
            f"--progress-bar off --no-cache-dir --index-url {url}{trusted} -- {specs}"
        )
    return (
        "npm install --no-audit --no-fund --no-update-notifier --loglevel=warn --prefix /home/user "
        f"--registry {url} -- {specs}"
    )
