"""One QEMU process: launch it confined, connect to its agent, kill it.

Every VM gets a private host directory (its sockets and console log, owned by
the unprivileged uid of its own that QEMU runs as) and, where the host has cgroups, a cgroup
with memory, pids and CPU limits that QEMU is moved into before the guest runs
a single instruction. Teardown SIGKILLs QEMU (and the cgroup), waits for the
exit, and removes the directory: no grace periods, nothing left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from corral.backends.base import Instance, off_loop
from corral.backends.microvm.qemu import RamFile, VmFiles, VmShape, qemu_argv
from corral.backends.microvm.host_streams import HostStreams
from corral.backends.microvm.host_user import TEMPLATE_GID, vm_credentials
from corral.errors import SandboxStartError
from corral.host.cgroups import Cgroup, CgroupLimits
from corral.host.sandbox_names import new_name
from corral.host.sandbox_user import drop_privileges
from corral.host.service_dirs import make_service_dir, remove_service_dir
from corral.models import ResourceUsage
from corral.protocol import wire

#: Memory QEMU itself needs next to guest RAM (TCG's code cache, device state, its own heap, the pages
#: of its template's RAM file it maps). 192 MiB was too little: a guest that touched all its RAM right
#: after its template was taken had QEMU killed by this cgroup (anon 330 MB, shmem 37 MB, file 23 MB).
QEMU_OVERHEAD_MB = 384
#: Processes and threads QEMU may have (main, vCPUs, I/O and RCU threads).
QEMU_PIDS = 64
_CONSOLE_TAIL_BYTES = 4096


class Vm(Instance):
    """A launched QEMU process and, once connected, the stream to its agent."""

    def __init__(self, name: str, directory: Path, files: VmFiles, shape: VmShape,
                 process: asyncio.subprocess.Process, cgroup: Cgroup | None, setup_ms: float):
        self.name = name
        self.shape = shape
        self.directory = directory
        self.service_dir = directory
        self.streams: HostStreams | None = None
        self.files = files
        self.process = process
        self.cgroup = cgroup
        self.setup_ms = setup_ms
        self.boot_ms = 0.0
        #: The console of what the guest ran before this QEMU (the boot of the template it was restored from).
        self.console_before: Path | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._stopped = False

    @classmethod
    async def launch(cls, binary: str, image_files: tuple[Path, Path, Path], shape: VmShape, *,
                     ram_file: RamFile | None = None, incoming: bool = False, seccomp: bool = True,
                     as_root: bool = False, credentials: tuple[int, int] | None = None) -> Vm:
        """Start QEMU for one VM (the guest starts booting, or waits for an incoming migration).

        QEMU runs as ``credentials`` (default: a fresh uid of its own, when corral is root)
        unless ``as_root``.
        """
        started = time.perf_counter()
        name = new_name()
        credentials = None if as_root else (credentials or vm_credentials())
        directory = make_service_dir(name, credentials)
        kernel, initramfs, rootfs = image_files
        files = VmFiles(kernel, initramfs, rootfs, directory / "agent.sock", directory / "qmp.sock",
                        directory / "console.log", directory / "streams.sock")
        cgroup = None
        try:
            cgroup = await asyncio.to_thread(
                Cgroup.create, name,
                CgroupLimits((shape.memory_mb + QEMU_OVERHEAD_MB) * 2**20, QEMU_PIDS, float(shape.vcpus)),
            )
            argv = qemu_argv(binary, files, shape, ram_file=ram_file, incoming=incoming, seccomp=seccomp)
            kwargs: dict = {}
            if credentials is not None:
                argv, kwargs = drop_privileges(argv, credentials, groups=(TEMPLATE_GID,))
            with open(directory / "qemu.log", "wb") as log:
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
                    start_new_session=True, **kwargs,
                )
        except BaseException as exc:
            if cgroup is not None:
                cgroup.remove()
            remove_service_dir(directory)
            if isinstance(exc, OSError):
                raise SandboxStartError(f"cannot launch QEMU: {exc}") from exc
            raise
        vm = cls(name, directory, files, shape, process, cgroup, setup_ms=(time.perf_counter() - started) * 1000)
        if cgroup is not None:
            try:
                cgroup.add(process.pid)
            except OSError as exc:
                vm.stop_now()
                raise SandboxStartError(f"cannot put QEMU into its cgroup: {exc}") from exc
        return vm

    async def connect_agent(self, deadline_s: float) -> None:
        """Open the agent's socket and serve the host streams (the sockets appear a few ms after launch).

        Before the guest runs: a guest port whose host end is not connected reads as closed.
        """
        end = asyncio.get_running_loop().time() + deadline_s
        self.reader, self.writer = await self._connect(self.files.agent_socket, end, limit=wire.MAX_FRAME_BYTES + 1)
        self.streams = HostStreams(*await self._connect(self.files.streams_socket, end), self.directory)

    async def _connect(self, path: Path, end: float, **options) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to one of QEMU's sockets, retrying until it listens (QEMU serves one client per socket,
        so a connection that succeeded is never made again)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await asyncio.open_unix_connection(str(path), **options)
            except (FileNotFoundError, ConnectionRefusedError):  # not bound yet, or bound but not listening
                if not self.alive():
                    raise SandboxStartError(f"QEMU exited during start-up{self.explain()}") from None
                if loop.time() > end:
                    raise SandboxStartError(f"QEMU's socket {path.name} did not open in time") from None
                await asyncio.sleep(0.002)

    async def read_frame(self, deadline_s: float, what: str) -> bytes:
        """One line from the agent, or SandboxStartError when QEMU exits or the deadline passes.

        A guest that panics makes QEMU exit (``panic=-1`` with ``-no-reboot``); one that
        hangs is caught by the deadline. Either way the console's last lines are in the error.
        """
        read = asyncio.ensure_future(self.reader.readline())
        exited = asyncio.ensure_future(self.process.wait())
        try:
            done, _ = await asyncio.wait({read, exited}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            if not read.done():
                read.cancel()
        if read in done and read.result():
            return read.result()
        if read in done or exited in done:
            raise SandboxStartError(f"the VM stopped while waiting for {what}{self.explain()}")
        raise SandboxStartError(
            f"waited {deadline_s:.0f} s for {what} in vain (the guest hangs){self.explain()}")

    def console_log(self) -> str:
        """The guest's serial console so far (kernel and init messages; a restored VM's starts with
        its template's boot)."""
        paths = [self.console_before, self.files.console_log] if self.console_before else [self.files.console_log]
        text = []
        for path in paths:
            with contextlib.suppress(OSError):
                text.append(path.read_bytes().decode(errors="replace"))
        return "".join(text)

    def diagnostics(self) -> str:
        """The console's last lines and whatever QEMU wrote to stderr."""
        parts = []
        console = self.console_log()[-_CONSOLE_TAIL_BYTES:].strip()
        if console:
            parts.append(f"console: {console}")
        with contextlib.suppress(OSError):
            qemu = (self.directory / "qemu.log").read_bytes()[-_CONSOLE_TAIL_BYTES:].decode(errors="replace")
            if qemu.strip():
                parts.append(f"qemu: {qemu.strip()}")
        return "\n".join(parts)

    def explain(self) -> str:
        """``diagnostics()`` as a suffix for error messages."""
        text = self.diagnostics()
        return f"; {text[-2000:]}" if text else ""

    def alive(self) -> bool:
        """True while QEMU runs."""
        return self.process.returncode is None and not self._stopped

    def usage(self) -> ResourceUsage | None:
        """Resource use is inside the guest; the host's cgroup counts QEMU, not the user's code."""
        return None

    def reset_accounting(self) -> None:
        """Nothing to reset on the host side."""

    def rss_bytes(self) -> int | None:
        """QEMU's resident memory (for benchmarks and ``corral doctor``)."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    async def stop(self) -> None:
        """Kill QEMU, wait for it, remove its cgroup and directory."""
        if self._stopped:
            return
        self._kill()
        if self.streams is not None:
            await self.streams.close()
        with contextlib.suppress(Exception):
            await self.process.wait()
        await off_loop(self._release)

    def stop_now(self) -> None:
        """Kill and clean up without awaiting; completes an interrupted stop()."""
        self._kill()
        self._release()

    def _kill(self) -> None:
        self._stopped = True
        if self.streams is not None:
            self.streams.close_now()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def _release(self) -> None:
        transport = getattr(self.process, "_transport", None)
        if transport is not None:
            transport.close()
        if self.cgroup is not None:
            self.cgroup.remove()
        remove_service_dir(self.directory)
