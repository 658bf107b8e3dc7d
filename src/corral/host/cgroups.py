"""Per-sandbox cgroups: memory, pids and CPU limits, accounting, and kill-all.

Both hierarchies are supported and chosen by probing: cgroup v2 where its
``memory`` and ``pids`` controllers are available, otherwise v1 controllers
mounted separately (this kind of machine has a hybrid layout whose v2 part has
no controllers). Each sandbox gets ``corral/<id>`` under every controller.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from corral.host.sandbox_names import PREFIX, owner_alive
from corral.models import ResourceUsage

GROUP_ROOT = "corral"
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
_REQUIRED = ("memory", "pids")
#: How long kill_all keeps killing before it gives up on an emptied cgroup.
KILL_DEADLINE_S = 5.0


@dataclass(frozen=True)
class CgroupLimits:
    """Limits to write into a sandbox's cgroup."""

    memory_bytes: int
    pids: int
    cpus: float | None


def _cgroup_mounts() -> dict[str, Path]:
    """Map controller name (or ``"unified"``) to its mount point."""
    mounts: dict[str, Path] = {}
    with open("/proc/self/mounts") as handle:
        for line in handle:
            _dev, target, fstype, options, *_ = line.split()
            if fstype == "cgroup2":
                mounts.setdefault("unified", Path(target))
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option in _V1_CONTROLLERS:
                        mounts[option] = Path(target)
    return mounts


@lru_cache(maxsize=1)
def detect() -> tuple[str | None, dict[str, Path], str]:
    """Which cgroup version can limit sandboxes here: (version or None, controller dirs, explanation)."""
    try:
        mounts = _cgroup_mounts()
    except OSError as exc:
        return None, {}, f"cannot read mounts: {exc}"
    unified = mounts.get("unified")
    if unified is not None:
        try:
            controllers = (unified / "cgroup.controllers").read_text().split()
        except OSError:
            controllers = []
        if all(name in controllers for name in _REQUIRED):
            if _writable(unified):
                dirs = {name: unified for name in ("memory", "pids", "cpu")}
                return "v2", dirs, f"cgroup v2 at {unified} with {' '.join(controllers)}"
            return None, {}, f"cgroup v2 at {unified} is not writable by this user (no delegation)"
    missing = [name for name in _REQUIRED if name not in mounts]
    if missing:
        return None, {}, f"no cgroup v2 memory+pids controllers, and v1 lacks {', '.join(missing)}"
    dirs = {name: mounts[name] for name in _V1_CONTROLLERS if name in mounts}
    not_writable = [name for name in _REQUIRED if not _writable(dirs[name])]
    if not_writable:
        return None, {}, f"cgroup v1 {', '.join(not_writable)} hierarchy is not writable by this user"
    return "v1", dirs, f"cgroup v1 controllers: {', '.join(sorted(dirs))}"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


class Cgroup:
    """One sandbox's cgroup (under every controller it uses)."""

    def __init__(self, version: str, dirs: dict[str, Path], name: str):
        self.version = version
        self.name = name
        self.paths = {controller: root / GROUP_ROOT / name for controller, root in dirs.items()}
        self._files = self._usage_files()

    @classmethod
    def existing(cls, name: str) -> Cgroup | None:
        """The sandbox cgroup ``name`` if it exists (to clean up after a crashed corral)."""
        version, dirs, _ = detect()
        if version is None or not (dirs["memory"] / GROUP_ROOT / name).is_dir():
            return None
        return cls(version, dirs, name)

    @classmethod
    def create(cls, name: str, limits: CgroupLimits) -> Cgroup | None:
        """Create and configure the cgroup; None when this host has no usable cgroups."""
        version, dirs, _ = detect()
        if version is None:
            return None
        _prepare()
        group = cls(version, dirs, name)
        try:
            for path in set(group.paths.values()):
                path.mkdir(parents=True, exist_ok=True)
            group._apply(limits)
        except BaseException:
            group.remove()  # half a cgroup is still one to clean up
            raise
        return group

    def _apply(self, limits: CgroupLimits) -> None:
        if self.version == "v2":
            path = self.paths["memory"]
            _write(path / "memory.max", str(limits.memory_bytes))
            _write(path / "memory.swap.max", "0", quiet=True)
            _write(path / "pids.max", str(limits.pids))
            if limits.cpus is not None:
                _write(path / "cpu.max", f"{int(limits.cpus * 100_000)} 100000", quiet=True)
            return
        memory = self.paths["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes), quiet=True)
        _write(memory / "memory.swappiness", "0", quiet=True)
        _write(self.paths["pids"] / "pids.max", str(limits.pids))
        if limits.cpus is not None and "cpu" in self.paths:
            _write(self.paths["cpu"] / "cpu.cfs_period_us", "100000", quiet=True)
            _write(self.paths["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * 100_000)), quiet=True)

    def add(self, pid: int) -> None:
        """Move process ``pid`` into this cgroup; raise OSError if a limiting controller refuses."""
        limiting = {self.paths[name] for name in _REQUIRED}
        for path in set(self.paths.values()):
            _write(path / "cgroup.procs", str(pid), quiet=path not in limiting)

    def pids(self) -> list[int]:
        """Processes currently in the cgroup."""
        try:
            text = (self.paths["pids"] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def usage(self) -> ResourceUsage:
        """CPU time, peak memory and OOM kills so far (read on every run: kept cheap)."""
        cpu_file, cpu_key, cpu_scale, peak_file, oom_file = self._files
        cpu = _read_key(cpu_file, cpu_key) if cpu_key else _read_int(cpu_file)
        peak = _read_int(peak_file)
        oom = _read_key(oom_file, "oom_kill")
        return ResourceUsage(
            cpu / cpu_scale if cpu is not None else None, peak / 2**20 if peak is not None else None, oom or 0
        )

    def _usage_files(self) -> tuple[str, str | None, float, str, str]:
        if self.version == "v2":
            base = str(self.paths["memory"])
            return f"{base}/cpu.stat", "usage_usec", 1000.0, f"{base}/memory.peak", f"{base}/memory.events"
        memory = str(self.paths["memory"])
        cpu = f"{self.paths['cpuacct']}/cpuacct.usage" if "cpuacct" in self.paths else "/nonexistent"
        return cpu, None, 1e6, f"{memory}/memory.max_usage_in_bytes", f"{memory}/memory.oom_control"

    def reset_peak(self) -> None:
        """Restart peak-memory tracking from the current usage (v1; v2 only where writable)."""
        if self.version == "v2":
            _write(self.paths["memory"] / "memory.peak", "reset", quiet=True)
        else:
            _write(self.paths["memory"] / "memory.max_usage_in_bytes", "0", quiet=True)

    def kill_all(self) -> bool:
        """SIGKILL every process in the cgroup; return True once it is empty."""
        if self.version == "v2":
            _write(self.paths["memory"] / "cgroup.kill", "1", quiet=True)
        freezer = self.paths.get("freezer")
        if freezer is not None:
            _write(freezer / "freezer.state", "FROZEN", quiet=True)
        end = time.monotonic() + KILL_DEADLINE_S
        try:
            while time.monotonic() < end:
                pids = self.pids()
                if not pids:
                    return True
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if freezer is not None:
                    _write(freezer / "freezer.state", "THAWED", quiet=True)
                time.sleep(0.002)
            return not self.pids()
        finally:
            if freezer is not None:
                _write(freezer / "freezer.state", "THAWED", quiet=True)

    def remove(self) -> None:
        """Delete the (empty) cgroup directories."""
        for path in set(self.paths.values()):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


@lru_cache(maxsize=1)
def _prepare() -> None:
    """Once per process: enable the v2 controllers for corral's subtree, and remove the empty
    cgroups of sandboxes whose corral is gone (a live corral's, even empty ones, stay)."""
    version, dirs, _ = detect()
    if version == "v2":
        parent = dirs["memory"] / GROUP_ROOT
        parent.mkdir(exist_ok=True)
        available = (dirs["memory"] / "cgroup.controllers").read_text().split()
        wanted = " ".join(f"+{name}" for name in ("cpu", "memory", "pids") if name in available)
        _write(dirs["memory"] / "cgroup.subtree_control", wanted, quiet=True)
        _write(parent / "cgroup.subtree_control", wanted, quiet=True)
    for root in set(dirs.values()):
        parent = root / GROUP_ROOT
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir() and child.name.startswith(PREFIX) and not owner_alive(child.name):
                    try:
                        child.rmdir()  # fails on a cgroup that still has processes
                    except OSError:
                        pass


def _write(path: Path, value: str, quiet: bool = False) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError:
        if not quiet:
            raise


def _read(path: str | Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def _read_int(path: str | Path) -> int | None:
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_key(path: str | Path, key: str) -> int | None:
    try:
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return None
