"""The process sandbox: bubblewrap + seccomp + cgroups + rlimits + Landlock.

Start-up: create the sandbox's cgroup, build the bwrap command line, launch it
as the unprivileged sandbox uid, wait for the agent's hello, then move the
(still idle) process tree into the cgroup before any request can run code.
Teardown kills the cgroup's processes (or the whole PID namespace, where
there are no cgroups) and never waits on a grace period.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from pathlib import Path

from corral.backends import interior, seccomp
from corral.backends.base import Backend, Instance, ProbeResult, off_loop, parse_hello
from corral.backends.process import bwrap
from corral.backends.process.host_layout import host_layout
from corral.backends.process.probe import probe, recheck_after_failed_start
from corral.errors import IsolationUnavailableError, SandboxStartError
from corral.host.cgroups import Cgroup, CgroupLimits
from corral.host.runtime_dir import BWRAP_PATH, runtime_dir
from corral.host.sandbox_names import new_name
from corral.host.sandbox_user import drop_privileges
from corral.host.service_dirs import make_service_dir, remove_service_dir
from corral.models import ResourceUsage, SandboxSpec
from corral.protocol import Hello, wire

#: How long a sandbox may take from launch to the agent's hello.
BOOT_TIMEOUT_S = 20.0
_DIAGNOSTICS_BYTES = 16 * 1024
#: The agent is the last process the OOM killer should pick.
_AGENT_OOM_SCORE_ADJ = "-900"


class ProcessInstance(Instance):
    """A running bwrap sandbox."""

    def __init__(self, process: asyncio.subprocess.Process, cgroup: Cgroup | None, service_dir: Path,
                 setup_ms: float):
        self.process = process
        self.cgroup = cgroup
        self.service_dir = service_dir
        self.reader = process.stdout
        self.writer = process.stdin
        self.setup_ms = setup_ms
        self.boot_ms = 0.0
        self._stderr = bytearray()
        self._stderr_task = asyncio.ensure_future(self._collect_stderr())
        self._stopped = False

    async def _collect_stderr(self) -> None:
        while chunk := await self.process.stderr.read(4096):
            self._stderr += chunk
            del self._stderr[:-_DIAGNOSTICS_BYTES]

    def diagnostics(self) -> str:
        """What bwrap or the agent wrote to stderr."""
        return self._stderr.decode(errors="replace").strip()

    def alive(self) -> bool:
        """True while bwrap (and so the sandbox) runs."""
        return self.process.returncode is None and not self._stopped

    def usage(self) -> ResourceUsage | None:
        """Resource use from the sandbox's cgroup."""
        return self.cgroup.usage() if self.cgroup is not None else None

    def reset_accounting(self) -> None:
        """Reset the cgroup's peak-memory mark."""
        if self.cgroup is not None:
            self.cgroup.reset_peak()

    async def stop(self) -> None:
        """Kill the whole sandbox and remove its cgroup (blocking steps run off the loop)."""
        if self._first_stop():
            if self.cgroup is not None:
                await off_loop(self.cgroup.kill_all)
            with contextlib.suppress(Exception):
                self.writer.close()
            await self.process.wait()
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._stderr_task, 1.0)  # keep the sandbox's last words
            self._close_pipes()
            await off_loop(self._release)

    def stop_now(self) -> None:
        """Kill and clean up without awaiting (the loop that would run stop() is closing).

        Every step is idempotent, so this also completes a stop() that was interrupted.
        """
        self._stopped = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        if self.cgroup is not None:
            self.cgroup.kill_all()
        self._stderr_task.cancel()
        self._close_pipes()
        self._release()

    def _first_stop(self) -> bool:
        """Kill bwrap (and so the sandbox); True the first time only."""
        if self._stopped:
            return False
        self._stopped = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        return True

    def _close_pipes(self) -> None:
        # asyncio's Process has no close(): its transport owns the pipes; close it so none leaks
        transport = getattr(self.process, "_transport", None)
        if transport is not None:
            transport.close()

    def _release(self) -> None:
        """Remove the cgroup and the service directory (blocking: may retry for a moment)."""
        if self.cgroup is not None:
            self.cgroup.remove()
        remove_service_dir(self.service_dir)


class ProcessBackend(Backend):
    """Linux namespaces via bubblewrap; the default isolation level."""

    name = "process"
    capabilities = frozenset({"confinement", "resource_limits", "network_namespace", "per_run_isolation", "pty"})

    def probe(self) -> ProbeResult:
        """See :func:`corral.backends.process.probe.probe`."""
        return probe()

    async def start(self, spec: SandboxSpec) -> ProcessInstance:
        """Launch bwrap with the agent inside; return once the agent said hello.

        If the start fails while the probe trusted a remembered trial sandbox, the probe runs
        again for real, and IsolationUnavailableError says why if the level no longer works.
        """
        try:
            return await self._start(spec)
        except SandboxStartError as exc:
            result = recheck_after_failed_start()
            if result is not None and not result.available:
                raise IsolationUnavailableError(self.name, result.reason) from exc
            raise

    async def _start(self, spec: SandboxSpec) -> ProcessInstance:
        """Launch bwrap with the agent inside; return once the agent said hello.

        bwrap reports the sandbox's PID 1 on ``--info-fd`` and then waits on
        ``--block-fd`` before it execs the agent; the host moves both bwrap and
        that process into the sandbox's cgroup in between, so not a single
        instruction of the agent (or anything it forks) runs outside its limits.
        """
        started = time.perf_counter()
        runtime = runtime_dir()
        limits = spec.limits
        name = new_name()
        # made: undone if the start fails before the instance owns it; host_ends: this side of the
        # info and block pipes, closed once the agent said hello (or the start failed)
        with contextlib.ExitStack() as made, contextlib.ExitStack() as host_ends:
            made.callback(_remove_cgroup, name)  # by name: also one a cancelled thread went on to create
            try:
                cgroup = await asyncio.to_thread(Cgroup.create, name,
                                                 CgroupLimits(limits.memory_mb * 2**20, limits.pids, limits.cpus))
                service_dir = make_service_dir(name)
                made.callback(remove_service_dir, service_dir)
                with contextlib.ExitStack() as child_ends:  # bwrap's copies; closed here once it has them
                    seccomp_fd = seccomp.program_fd()
                    child_ends.callback(os.close, seccomp_fd)
                    info_r, info_w = _pipe(host_ends, child_ends)
                    block_r, block_w = _pipe(child_ends, host_ends)
                    layout = host_layout(
                        str(runtime), json.dumps(_agent_config(spec, cgroup is not None)),
                        limits.writable_mb * 2**20, limits.shm_mb * 2**20, seccomp_fd,
                        info_fd=info_w, block_fd=block_r, service_dir=str(service_dir),
                    )
                    argv, kwargs = drop_privileges(bwrap.bwrap_argv(str(runtime / BWRAP_PATH), layout))
                    process = await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        pass_fds=(seccomp_fd, info_w, block_r),
                        start_new_session=True,
                        limit=wire.MAX_FRAME_BYTES + 1,
                        **kwargs,
                    )
            except OSError as exc:  # out of file descriptors, memory, processes, disk...
                raise SandboxStartError(f"cannot launch bwrap: {exc}") from exc
            made.pop_all()  # from here the instance owns the cgroup and the directory
            launched = time.perf_counter()
            instance = ProcessInstance(process, cgroup, service_dir, setup_ms=(launched - started) * 1000)
            try:
                sandbox_pid = await _read_info(info_r, process)
                for pid in (process.pid, sandbox_pid):
                    if cgroup is not None:
                        try:
                            cgroup.add(pid)
                        except OSError as exc:
                            raise SandboxStartError(f"cannot put the sandbox into its cgroup: {exc}") from exc
                _write_quietly(f"/proc/{sandbox_pid}/oom_score_adj", _AGENT_OOM_SCORE_ADJ)
                os.write(block_w, b"go")
                await _wait_for_hello(process)
            except BaseException as exc:
                if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                    instance.stop_now()  # the caller went away: no awaiting any more
                    raise
                await instance.stop()
                if isinstance(exc, SandboxStartError):
                    raise SandboxStartError(f"{exc}{_explain(instance)}") from exc
                if isinstance(exc, OSError):  # out of file descriptors, memory...: still a failed start
                    raise SandboxStartError(f"cannot start the sandbox: {exc}{_explain(instance)}") from exc
                raise
        instance.boot_ms = (time.perf_counter() - launched) * 1000
        return instance


def _pipe(read_owner: contextlib.ExitStack, write_owner: contextlib.ExitStack) -> tuple[int, int]:
    """A pipe whose ends close with ``read_owner`` and ``write_owner``."""
    read_end, write_end = os.pipe()
    read_owner.callback(os.close, read_end)
    write_owner.callback(os.close, write_end)
    return read_end, write_end


def _remove_cgroup(name: str) -> None:
    cgroup = Cgroup.existing(name)
    if cgroup is not None:
        cgroup.remove()


def _agent_config(spec: SandboxSpec, has_cgroup: bool) -> dict:
    """The agent's start-up configuration for ``spec``."""
    rlimits = {"RLIMIT_CORE": 0, "RLIMIT_NOFILE": 4096}
    if not has_cgroup:
        rlimits["RLIMIT_AS"] = spec.limits.memory_mb * 2**20
    return {
        "home": interior.HOME,
        "env": {**interior.SANDBOX_ENV, **spec.env_dict},
        "rlimits": rlimits,
        "landlock_paths": list(interior.WRITABLE_PATHS),
        "user_seccomp_b64": base64.b64encode(seccomp.filter_program()).decode(),
        "wipe_paths": [list(entry) for entry in interior.WIPE_PATHS],
        "protect_agent": True,
        "prefork": spec.language if spec.language in ("python", "javascript") else None,
    }


async def _read_info(fd: int, process: asyncio.subprocess.Process) -> int:
    """The host pid of the sandbox's PID 1, from bwrap's ``--info-fd`` JSON."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = b""
    deadline = loop.time() + BOOT_TIMEOUT_S
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            chunk = None
        if chunk:
            data += chunk
            try:
                return int(json.loads(data)["child-pid"])
            except (ValueError, KeyError):
                continue  # not all of it yet
        if chunk == b"" or process.returncode is not None:
            raise SandboxStartError("bwrap exited before the sandbox was set up")
        if loop.time() > deadline:
            raise SandboxStartError(f"bwrap did not set the sandbox up within {BOOT_TIMEOUT_S:.0f} s")
        ready = loop.create_future()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)


async def _wait_for_hello(process: asyncio.subprocess.Process) -> Hello:
    try:
        line = await asyncio.wait_for(process.stdout.readline(), BOOT_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise SandboxStartError(f"the agent did not start within {BOOT_TIMEOUT_S:.0f} s") from None
    if not line:
        raise SandboxStartError("the sandbox exited before its agent started")
    return parse_hello(line)


def _explain(instance: ProcessInstance) -> str:
    text = instance.diagnostics()
    return f"; sandbox said: {text[-2000:]}" if text else ""


def _write_quietly(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as handle:
        handle.write(value)
