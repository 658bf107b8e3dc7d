"""The bubblewrap command line for one process sandbox: spec in, argv out.

Pure: it reads nothing and starts nothing, so it is unit-tested without
privileges. The sandbox gets every namespace (user, pid, mount, net, ipc, uts,
cgroup), a root made of read-only binds of system directories plus size-limited
tmpfs for home and /tmp, a fresh /proc, a minimal /dev, no capabilities, the
sandbox-wide seccomp filter, and the agent as PID 1. Nested user namespaces
stay possible for the agent's children (each isolated run makes its own; see
``corral.agent.isolation``); user code is denied them by the user seccomp
filter and by a zero user-namespace limit inside its run.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.backends.interior import HOME, SANDBOX_GID, SANDBOX_PATH, SANDBOX_UID
from corral.protocol.wire import SERVICE_DIR

AGENT_DIR = "/opt/corral"

#: Host /etc entries bound read-only when they exist (everything else of the
#: host's /etc stays invisible; passwd, group, hosts... are corral's own).
ETC_ENTRIES = (
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
    "bash.bashrc",
    "profile",
    "inputrc",
    "debian_version",
    "os-release",
    "protocols",
    "services",
)


@dataclass(frozen=True)
class SandboxLayout:
    """What the host has to offer a sandbox: where things are, and their sizes."""

    runtime_dir: str
    agent_config: str
    disk_bytes: int
    shm_bytes: int
    seccomp_fd: int | None
    python: str = "/usr/bin/python3"
    system_dirs: tuple[str, ...] = ("/usr",)
    symlinks: tuple[tuple[str, str], ...] = ()
    etc_entries: tuple[str, ...] = ()
    #: Host directory shown read-only at wire.SERVICE_DIR (Unix sockets of host services).
    service_dir: str | None = None
    #: bwrap writes the sandbox's host pid here, then waits on block_fd before exec'ing the agent.
    info_fd: int | None = None
    block_fd: int | None = None


def bwrap_argv(bwrap: str, layout: SandboxLayout) -> list[str]:
    """Command line that starts the agent inside a new process sandbox."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_GID),
        "--hostname", "sandbox",
        "--cap-drop", "ALL",
        "--clearenv",
        "--setenv", "PATH", SANDBOX_PATH,
        "--setenv", "HOME", HOME,
        "--setenv", "LANG", "C.UTF-8",
    ]
    for directory in layout.system_dirs:
        argv += ["--ro-bind", directory, directory]
    for link, target in layout.symlinks:
        argv += ["--symlink", target, link]
    for entry in layout.etc_entries:
        argv += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
    for name in ("passwd", "group", "hosts", "hostname", "resolv.conf", "nsswitch.conf"):
        argv += ["--ro-bind", f"{layout.runtime_dir}/etc/{name}", f"/etc/{name}"]
    if layout.service_dir is not None:
        argv += ["--ro-bind", layout.service_dir, SERVICE_DIR]
    argv += [
        "--ro-bind", layout.runtime_dir, AGENT_DIR,
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(layout.shm_bytes), "--perms", "1777", "--tmpfs", "/dev/shm",
        "--size", str(layout.disk_bytes), "--perms", "1777", "--tmpfs", "/tmp",
        "--size", str(layout.disk_bytes), "--perms", "0755", "--tmpfs", HOME,
        "--chdir", HOME,
    ]
    if layout.seccomp_fd is not None:
        argv += ["--seccomp", str(layout.seccomp_fd)]
    if layout.info_fd is not None:
        argv += ["--info-fd", str(layout.info_fd)]
    if layout.block_fd is not None:
        argv += ["--block-fd", str(layout.block_fd)]
    argv += [layout.python, "-I", f"{AGENT_DIR}/agent.py", layout.agent_config]
    return argv
