"""A test-only backend with NO ISOLATION: the real agent as a plain subprocess on the host.

UNSAFE. Code run on this backend runs on the host, as the user running the tests, with
the host's files, network and processes within its reach: no bubblewrap, no namespaces,
no seccomp, no Landlock, no cgroups, no resource limits. It exists so that tests of the
hosted service, the HTTP routes and the client (records, lifecycle states, auth, keys,
listing, metadata, errors) run fast and without privileges, against the real agent over
the real wire protocol. It lives under tests/ and is registered only by test fixtures
(:func:`register`); users cannot select it, and ``isolation="auto"`` never picks it (auto
only considers the built-in levels), though a test may pin ``CORRAL_ISOLATION=direct``.

Each sandbox is a private directory with a home and a /tmp of its own (the paths the
agent's files and scratch space use); absolute paths still reach the host's file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from corral.backends import registry
from corral.backends.base import Backend, Instance, ProbeResult, off_loop, parse_hello
from corral.errors import SandboxStartError
from corral.host.runtime_dir import runtime_dir
from corral.models import SandboxSpec
from corral.protocol import wire

NAME = "direct"
#: How long the agent may take from launch to its hello.
BOOT_TIMEOUT_S = 20.0
_AGENT = Path(__file__).with_name("direct_agent.py")
#: The interpreter the sandboxes run the agent and Python code with.
_PYTHON = "/usr/bin/python3"
_PATH = "/usr/local/bin:/usr/bin:/bin"
_DIAGNOSTICS_BYTES = 16 * 1024


def descendants(root: int) -> list[int]:
    """Pids of every descendant of ``root`` that has not exited yet (from the host's /proc)."""
    children: dict[int, list[int]] = {}
    exited = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            if fields[0] in (b"Z", b"X"):
                exited.add(int(entry))
    found, pending = [], list(children.get(root, ()))
    while pending:
        pid = pending.pop()
        if pid not in exited:
            found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


class DirectInstance(Instance):
    """The agent running as a host subprocess (UNSAFE: no isolation)."""

    def __init__(self, process: asyncio.subprocess.Process, root: Path, setup_ms: float):
        self.process = process
        self.root = root
        self.service_dir = root / "service"
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
        """What the agent wrote to stderr."""
        return self._stderr.decode(errors="replace").strip()

    def alive(self) -> bool:
        """True while the agent runs."""
        return self.process.returncode is None and not self._stopped

    def usage(self) -> None:
        """Nothing is measured: there is no cgroup."""
        return None

    def reset_accounting(self) -> None:
        """Nothing to reset: there is no cgroup."""

    async def stop(self) -> None:
        """Kill the agent and everything it started, and remove the sandbox's directory."""
        if not self._stopped:
            self._stopped = True
            await off_loop(self._kill)
            await self.process.wait()
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._stderr_task, 1.0)
            self._close()

    def stop_now(self) -> None:
        """The same as :meth:`stop`, without awaiting (idempotent: it also completes an interrupted stop)."""
        self._kill()
        self._stderr_task.cancel()
        self._close()

    def _kill(self) -> None:
        """SIGKILL the agent's descendants (they stay its own: it is a subreaper), then the agent."""
        self._stopped = True
        for _ in range(100):
            pids = descendants(self.process.pid) if self.process.returncode is None else []
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def _close(self) -> None:
        transport = getattr(self.process, "_transport", None)
        if transport is not None:
            transport.close()
        shutil.rmtree(self.root, ignore_errors=True)


class DirectBackend(Backend):
    """The agent as a plain host subprocess; for tests only (UNSAFE: no isolation at all)."""

    name = NAME
    #: None of the isolation capabilities; terminals work (the agent makes the pseudo-terminal).
    capabilities = frozenset({"pty"})

    def probe(self) -> ProbeResult:
        """Always available: it needs nothing but a Python interpreter."""
        return ProbeResult(True, "the agent as a plain host process: NO isolation (tests only)",
                           {"isolation": "none: no namespaces, no seccomp, no cgroups, no limits"})

    def may_be_hardware_isolated(self) -> bool:
        """Never."""
        return False

    async def start(self, spec: SandboxSpec) -> DirectInstance:
        """Start the agent in a private directory and wait for its hello."""
        started = time.perf_counter()
        root = Path(tempfile.mkdtemp(prefix="corral-direct-"))
        home, tmp = root / "home", root / "tmp"
        for directory in (home, tmp, root / "service"):
            directory.mkdir()
        tmp.chmod(0o1777)
        env = {"HOME": str(home), "PATH": _PATH, "LANG": "C.UTF-8", "USER": "user", "TMPDIR": str(tmp)}
        config = {"home": str(home), "env": {**env, **spec.env_dict}, "scratch_dir": str(tmp / ".corral"),
                  "wipe_paths": [[str(home), 0o755], [str(tmp), 0o1777]],
                  "prefork": spec.language if spec.language in ("python", "javascript") else None}
        try:
            process = await asyncio.create_subprocess_exec(
                _PYTHON, "-I", str(_AGENT), str(runtime_dir()), json.dumps(config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=home, env=env, start_new_session=True, limit=wire.MAX_FRAME_BYTES + 1,
            )
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise SandboxStartError(f"cannot launch the agent: {exc}") from exc
        launched = time.perf_counter()
        instance = DirectInstance(process, root, setup_ms=(launched - started) * 1000)
        async with instance.stopped_on_failure():
            try:
                line = await asyncio.wait_for(process.stdout.readline(), BOOT_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise SandboxStartError(f"the agent did not start within {BOOT_TIMEOUT_S:.0f} s") from None
            if not line:
                await process.wait()
                raise SandboxStartError(f"the agent exited before its hello: {instance.diagnostics()[-2000:]}")
            parse_hello(line)
        instance.boot_ms = (time.perf_counter() - launched) * 1000
        return instance


def register() -> DirectBackend:
    """Make ``isolation="direct"`` resolvable in this process (test fixtures only)."""
    registry.names()  # the built-in levels first, so registering does not stand in for them
    backend = DirectBackend()
    registry.register(backend)
    return backend
