"""The agent's event loop: reads requests, runs them, writes events.

Single-threaded on purpose: the agent forks Python children from itself (the
zygote path), and forking a multi-threaded process is unsafe. One epoll set
watches the request pipe, every child's output pipes and a SIGCHLD wake-up
pipe; a heap of deadlines drives timeouts.
"""

from __future__ import annotations

import binascii
import heapq
import itertools
import os
import select
try:  # the C module: ``signal`` wraps it in enums, which cost ~1.5 ms to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal
import sys
import time

from corral.agent import child, counters, reset, tree
from corral.agent.dumpable import set_dumpable
from corral.agent.files import FileOpError, Files
from corral.agent.identity import UserIdentity
from corral.agent.isolation import RunMounts
from corral.agent.lockdown import Lockdown
from corral.agent.processes import ProcessError
from corral.agent.processes import handle as handle_process
from corral.agent.runs import OneshotRun, SessionWorker, Spare
from corral.agent.zygote import Zygote, ZygoteGone
from corral.protocol import wire

SESSION_LANGUAGES = ("python", "javascript")


class RequestError(Exception):
    """A request is malformed or cannot be served; ``code`` is a protocol error code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Agent:
    """Serves protocol requests arriving on ``proto_in``; writes events to ``proto_out``."""

    def __init__(self, config, proto_in, proto_out, user_cgroup=None):
        self.home = config["home"]
        self.base_env = dict(config["env"])
        self.rlimits = dict(config.get("rlimits", {}))
        self.scratch_dir = config.get("scratch_dir", "/tmp/.corral")
        self.protected = bool(config.get("protect_agent"))
        #: Language of the one-shot child kept started ahead ("python", "javascript" or None).
        self.prefork = config.get("prefork") if config.get("prefork") in SESSION_LANGUAGES else None
        #: The kernel is the sandbox's own (a VM): its OOM-kill count is the sandbox's.
        self.report_oom = bool(config.get("report_oom"))
        self.wipe_paths = [(path, mode) for path, mode in config.get("wipe_paths", [])]
        self.spare = None
        #: The zygote isolated runs are forked from (started in main(), before Landlock).
        self.zygote = None
        #: What kind of spare to keep started: (language, isolated) of the last one-shot run.
        self.spare_kind = (self.prefork, False) if self.prefork else None
        #: Landlock and the user seccomp filter, applied by every child before user code.
        self.lockdown = Lockdown(config.get("landlock_paths") or (),
                                 binascii.a2b_base64(config["user_seccomp_b64"]) if config.get("user_seccomp_b64") else b"")
        #: The fresh file systems of each isolated run: the sandbox's writable places.
        self.run_mounts = RunMounts(self.wipe_paths)
        self.pairs = set()
        #: Streams to the host's service sockets, where the agent cannot reach them directly (a VM).
        self.host_streams = None
        self.egress = None
        #: Processes started with ``process_start``, by pid; their attachments by request id.
        self.processes = {}
        self.attachments = {}
        #: Directory watches (``watch_start``), by request id.
        self.watches = {}
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.pid = os.getpid()
        #: (uid, gid) of user code where the agent runs as root (a VM guest); None in the process sandbox.
        self.user = tuple(config["user"]) if config.get("user") else None
        self.as_user = UserIdentity(self.user)
        #: The cgroup user code runs in, where the agent owns its kernel (see usercgroup.py); else None.
        self.user_cgroup = user_cgroup
        self.confinement = None
        if self.user is not None or user_cgroup is not None:
            self.confinement = child.Confinement(self.user, user_cgroup.procs if user_cgroup is not None else None)
        self.files = Files(self.home)
        self.epoll = select.epoll()
        self.handlers = {}
        self.timers = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = set()
        self.children = {}
        self.runs = {}
        self.sessions = {}
        self._input: list[bytes] = []  # pieces of the frame being read
        self._input_bytes = 0
        self._discarding = False
        self.running = True

    # --- loop plumbing -----------------------------------------------------

    def watch(self, fd, callback, writable=False):
        """Call ``callback()`` whenever ``fd`` is readable (or writable)."""
        self.handlers[fd] = callback
        self.epoll.register(fd, select.EPOLLOUT if writable else select.EPOLLIN)

    def rewatch(self, fd, readable, writable):
        """Change which readiness of a watched ``fd`` calls its callback."""
        if fd in self.handlers:
            mask = (select.EPOLLIN if readable else 0) | (select.EPOLLOUT if writable else 0)
            self.epoll.modify(fd, mask)

    def unwatch(self, fd):
        """Stop watching ``fd`` (before it is closed)."""
        if self.handlers.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def call_at(self, when, callback):
        """Call ``callback()`` at monotonic time ``when``; returns a handle for cancel_timer."""
        handle = next(self._timer_seq)
        heapq.heappush(self.timers, (when, handle, callback))
        return handle

    def cancel_timer(self, handle):
        """Forget a timer set with call_at."""
        self._cancelled_timers.add(handle)

    def adopt(self, pid, owner):
        """Route the exit status of child ``pid`` to ``owner.on_exit``."""
        self.children[pid] = owner

    def forget_run(self, request_id):
        """The run ``request_id`` is over: cancel can no longer reach it."""
        self.runs.pop(request_id, None)

    def send(self, message):
        """Write one event to the host."""
        data = memoryview(wire.encode_frame(message))
        while data:
            try:
                data = data[os.write(self.proto_out, data) :]
            except InterruptedError:
                continue

    def reap(self):
        """Collect every exited child; tell the owners of the ones we started."""
        for pid, status in tree.exited_children():
            self.child_exited(pid, status)

    def child_exited(self, pid, status):
        """Child ``pid`` (ours, or an isolated run the zygote forked) ended with wait status ``status``."""
        owner = self.children.pop(pid, None)
        if owner is not None:
            owner.on_exit(status)

    def take_spare(self, language, isolated):
        """The spare child for ``language`` (isolated or not), now owned by the caller (None if there is none).

        The kind of spare kept started follows the one-shot runs: after an isolated
        run the next spare is an isolated one (a pool's sandbox), else a plain one.
        """
        if isolated:
            self.spare_kind = (language, True)
        spare = self.spare
        if spare is None or (spare.language, spare.isolated) != (language, isolated):
            if spare is not None and isolated:
                spare.discard()
                self.spare = None
            return None
        self.spare = None
        return spare

    def ensure_spare(self):
        """Start a spare child for one-shot runs if pre-forking is on and none is waiting.

        Called at start (the host put the agent in its cgroup before it started)
        and after each answered request, so forking stays off the hot path.
        """
        if self.spare_kind is not None and self.spare is None and self.running:
            language, isolated = self.spare_kind
            if isolated or language in SESSION_LANGUAGES:
                try:
                    self.spare = Spare(self, language, isolated=isolated)
                except ZygoteGone:
                    self.spare_kind = None  # pings now report the sandbox broken

    def accounting_start(self):
        """What the agent measures of a run, where the kernel is the sandbox's own (a VM); else None."""
        if not self.report_oom:
            return None
        return counters.oom_kills(), self.user_cgroup.cpu_usec() if self.user_cgroup is not None else None

    def accounting_report(self, before):
        """``exec_done`` fields on the run since ``before``: OOM kills, CPU time, peak memory (if measured)."""
        if before is None:
            return {}
        oom_before, cpu_before = before
        report = {}
        oom_after = counters.oom_kills()
        if oom_before is not None and oom_after is not None:
            report["oom_killed"] = oom_after > oom_before
        if self.user_cgroup is not None and cpu_before is not None:
            try:
                report["cpu_ms"] = (self.user_cgroup.cpu_usec() - cpu_before) / 1000
                report["memory_peak_mb"] = self.user_cgroup.memory_peak_bytes() / 2**20
            except OSError:
                pass
        return report

    def kill_tree(self, root, since_ticks):
        """Kill ``root``, its descendants and the orphans started since ``since_ticks``.

        An isolated run (forked by the zygote) is killed by the zygote.
        """
        if getattr(self.children.get(root), "isolated", False) and self.zygote is not None and self.zygote.alive:
            self.zygote.kill(root)
            return
        known = set(self.children) - {root}
        tree.kill_tree(root, self.pid, known, since_ticks, self.reap)

    def serve(self):
        """Run until the host closes the request pipe."""
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in child.AGENT_IGNORED_SIGNALS:  # user code can signal PID 1; it must not stop the agent
            signal.signal(sig, signal.SIG_IGN)
        self.watch(wake_r, lambda: self._on_sigchld(wake_r))
        os.set_blocking(self.proto_in, False)
        self.watch(self.proto_in, self._on_input)
        while self.running:
            timeout = self._run_due_timers()
            try:
                events = self.epoll.poll(timeout)
            except InterruptedError:
                continue
            for fd, _mask in events:
                callback = self.handlers.get(fd)
                if callback is not None:
                    callback()
        self.shutdown()

    def _run_due_timers(self):
        now = time.monotonic()
        while self.timers:
            when, handle, callback = self.timers[0]
            if handle in self._cancelled_timers:
                heapq.heappop(self.timers)
                self._cancelled_timers.discard(handle)
                continue
            if when > now:
                return when - now
            heapq.heappop(self.timers)
            callback()
            now = time.monotonic()
        return -1

    def _on_sigchld(self, wake_r):
        try:
            while os.read(wake_r, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def shutdown(self):
        """Kill everything the agent started (the zygote ends when its socket closes with the agent)."""
        for pid, owner in list(self.children.items()):
            if owner is not self.zygote:
                self.kill_tree(pid, 0)

    # --- requests ------------------------------------------------------------

    def _on_input(self):
        try:
            chunk = os.read(self.proto_in, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self.running = False
            return
        # a frame arrives in many small reads (virtio-serial): keep the pieces and look for the
        # end of a frame only in the new one, so a big frame costs linear, not quadratic, time
        *complete, tail = chunk.split(b"\n")
        if complete:
            complete[0] = b"".join((*self._input, complete[0]))
            self._input, self._input_bytes = [], 0
        for line in complete:
            if self._discarding:
                self._discarding = False
                continue
            self._handle_line(line)
        if tail and not self._discarding:
            self._input.append(tail)
            self._input_bytes += len(tail)
            if self._input_bytes > wire.MAX_FRAME_BYTES:
                self._input, self._input_bytes = [], 0
                self._discarding = True
                self.send({"type": "error", "id": None, "code": "too_large", "message": "request frame too large"})

    def _handle_line(self, line):
        request_id = None
        try:
            request = wire.decode_frame(line)
            if not isinstance(request.get("id"), int) or isinstance(request.get("id"), bool):
                raise RequestError("invalid", "request has no integer id")
            request_id = request["id"]
            self._dispatch(request)
        except RequestError as exc:
            self.send({"type": "error", "id": request_id, "code": exc.code, "message": str(exc)})
        except (FileOpError, ProcessError) as exc:
            self.send({"type": "error", "id": request_id, "code": exc.code, "message": str(exc)})
        except ZygoteGone as exc:
            self.send({"type": "error", "id": request_id, "code": "broken", "message": f"cannot isolate the run: {exc}"})
        except ValueError as exc:
            self.send({"type": "error", "id": request_id, "code": "invalid", "message": str(exc)})
        except Exception as exc:  # never let one request kill the agent
            self.send({"type": "error", "id": request_id, "code": "internal", "message": f"{type(exc).__name__}: {exc}"})
        if not self.runs:
            self.ensure_spare()

    def _dispatch(self, request):
        kind = request["type"]
        request_id = request["id"]
        if kind == "exec":
            self._start_exec(self._checked_exec(request))
        elif kind in ("file_write", "file_read", "file_list", "file_remove", "file_stat", "file_mkdir", "file_rename"):
            with self.as_user:
                self._file_operation(kind, request)
        elif kind in ("process_start", "process_attach", "process_input", "process_close_stdin", "process_signal",
                      "process_list"):
            handle_process(self, request)
        elif kind == "cancel":
            target = self.runs.get(request.get("target")) or self.attachments.get(request.get("target")) \
                or self.watches.get(request.get("target"))
            if target is None:
                raise RequestError("unknown_target", f"no running operation {request.get('target')!r}")
            target.cancel()
            self.send({"type": "ack", "id": request_id})
        elif kind == "ping":
            if self.zygote is not None and not self.zygote.alive:
                raise RequestError("broken", "the zygote died: this sandbox cannot isolate runs any more")
            self.send({"type": "ack", "id": request_id})
        elif kind == "egress":
            self._egress(bool(request.get("enable")), _int(request, "port", wire.EGRESS_RELAY_PORT))
            self.send({"type": "ack", "id": request_id})
        elif kind == "port_connect":
            from corral.agent.relay import connect_port

            try:
                connect_port(self, _int(request, "port", 0), _text(request, "token"))
            except OSError as exc:
                raise RequestError("not_found", f"cannot connect to port {request.get('port')}: {exc.strerror or exc}")
            self.send({"type": "ack", "id": request_id})
        elif kind == "reset":
            self._reset()
            self.send({"type": "ack", "id": request_id})
        elif kind == "configure":
            self._configure(request)
            self.send({"type": "ack", "id": request_id})
        elif kind == "reseed":
            self._reseed(request)
            self.send({"type": "ack", "id": request_id})
        elif kind == "watch_start":  # directory watches: corral.agent.watch (ctypes, loaded on first use)
            from corral.agent.watch import DirectoryWatch

            DirectoryWatch(self, request)
        elif kind in ("pty_open", "pty_input", "pty_resize"):  # interactive terminals: corral.agent.pty
            from corral.agent.pty import PtyError, handle

            try:
                handle(self, request)
            except PtyError as exc:
                raise RequestError(exc.code, str(exc)) from None
        else:
            raise RequestError("invalid", f"unknown request type {kind!r}")

    def _file_operation(self, kind, request):
        request_id = request["id"]
        if kind == "file_write":
            size = self.files.write(request.get("path"), _text(request, "data_b64"), _int(request, "mode", 0o644))
            self.send({"type": "ack", "id": request_id, "size": size})
        elif kind == "file_read":
            self.send({"type": "file_data", "id": request_id, "data_b64": self.files.read(request.get("path"))})
        elif kind == "file_list":
            self.send({"type": "dir_listing", "id": request_id, "entries": self.files.list(request.get("path"))})
        elif kind == "file_stat":
            self.send({"type": "file_stat", "id": request_id, "entry": self.files.stat(request.get("path"))})
        elif kind == "file_mkdir":
            entry = self.files.make_dir(request.get("path"), bool(request.get("parents")))
            self.send({"type": "file_stat", "id": request_id, "entry": entry})
        elif kind == "file_rename":
            entry = self.files.rename(request.get("source"), request.get("destination"))
            self.send({"type": "file_stat", "id": request_id, "entry": entry})
        else:
            self.files.remove(request.get("path"), bool(request.get("recursive")))
            self.send({"type": "ack", "id": request_id})

    def _configure(self, request):
        """Settings a VM gets after boot or restore: env, fresh entropy, the pre-started language.

        A VM restored from a memory snapshot shares the snapshot's kernel RNG
        state and pre-forked spare with every other clone: the host's entropy
        reseeds the kernel, and the spare (whose ``random`` state was seeded
        before the snapshot) is replaced by a fresh fork.
        """
        if self.runs or self.sessions or self.processes:
            raise RequestError("busy", "configure is only allowed before the first run")
        env = request.get("env") or {}
        problem = wire.env_problems(env)
        if problem:
            raise RequestError("invalid", problem)
        prefork = request.get("prefork")
        if prefork is not None and prefork not in SESSION_LANGUAGES:
            raise RequestError("invalid", f"prefork must be one of {SESSION_LANGUAGES} or null")
        rlimits = request.get("rlimits") or {}
        for name, value in rlimits.items():
            if name not in wire.CONFIGURABLE_RLIMITS or not isinstance(value, int) or value < 0:
                raise RequestError("invalid", f"rlimits: {name!r} must be one of {wire.CONFIGURABLE_RLIMITS} "
                                   "with a non-negative integer value")
        memory_bytes = _int(request, "memory_bytes", 0)
        pids = _int(request, "pids", 0)
        seccomp_b64 = request.get("user_seccomp_b64") or ""
        try:
            seccomp_program = binascii.a2b_base64(_text(request, "user_seccomp_b64")) if seccomp_b64 else b""
        except (binascii.Error, ValueError):
            raise RequestError("invalid", "user_seccomp_b64 is not valid base64") from None
        if len(seccomp_program) % 8:
            raise RequestError("invalid", "user_seccomp_b64 is not a whole number of BPF instructions")
        self._reseed(request)
        if seccomp_program:
            self.lockdown.seccomp_program = seccomp_program
        if self.user_cgroup is not None and memory_bytes > 0 and pids > 0:
            try:
                self.user_cgroup.set_limits(memory_bytes, pids)
            except OSError as exc:
                raise RequestError("internal", f"cannot set the user cgroup's limits: {exc}") from None
        elif pids > 0:
            rlimits = {**rlimits, "RLIMIT_NPROC": pids}
        self.rlimits.update(rlimits)
        self.base_env.update(env)
        self.prefork = prefork
        self.spare_kind = (prefork, False) if prefork else None

    def _reseed(self, request):
        """Credit the host's entropy to the kernel RNG, reseed it, and replace the spare.

        The spare's ``random`` state was seeded when it was forked: in a VM restored from a
        snapshot, that was before the snapshot, the same for every copy.
        """
        if request.get("entropy_b64"):
            try:
                seed = binascii.a2b_base64(_text(request, "entropy_b64"))
            except (binascii.Error, ValueError):
                raise RequestError("invalid", "entropy_b64 is not valid base64") from None
            from corral.agent.entropy import reseed

            try:
                reseed(seed)
            except OSError as exc:
                raise RequestError("internal", f"cannot reseed the kernel's random number generator: {exc}") from None
        if self.spare is not None:
            self.spare.discard()
            self.spare = None

    def _egress(self, enable, port):
        """Start or stop the in-sandbox end of the egress proxy."""
        from corral.agent.relay import EgressRelay

        if enable and self.egress is None:
            try:
                self.egress = EgressRelay(self, port)
            except OSError as exc:
                raise RequestError("busy", f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        elif not enable and self.egress is not None:
            self.egress.close()
            self.egress = None
        else:
            return
        if self.spare is not None and self.spare.isolated:  # it chose its network namespace for the old setting
            self.spare.discard()
            self.spare = None

    def _reset(self):
        """Kill everything, empty the writable places, forget sessions and the spare."""
        if self.runs:
            raise RequestError("busy", "cannot reset while operations are running")
        if self.spare is not None:
            self.spare.discard()
        kept = {self.pid} | ({self.zygote.pid} if self.zygote is not None and self.zygote.alive else set())
        if not reset.kill_everything_but(kept, self.reap):
            raise RequestError("internal", "processes kept appearing while the sandbox was reset")
        self.spare = None
        self.sessions.clear()
        for watch in list(self.watches.values()):
            watch.cancel()
        for pair in list(self.pairs):
            pair.close()
        if self.host_streams is not None:
            self.host_streams.close_all()
        self._egress(False, 0)
        for path, mode in self.wipe_paths:
            reset.empty_directory(path, mode)
        reset.remove_sysv_ipc()
        if self.user_cgroup is not None:
            self.user_cgroup.recreate()  # the next user's peak memory starts from zero

    def _checked_exec(self, request):
        """Re-check an exec request (the agent trusts no input) and fill in defaults."""
        language = request.get("language")
        if language not in wire.LANGUAGES:
            raise RequestError("invalid", f"unknown language {language!r}")
        code = _text(request, "code")
        if len(code.encode("utf-8", "surrogatepass")) > wire.MAX_CODE_BYTES:
            raise RequestError("too_large", f"code is larger than {wire.MAX_CODE_BYTES} bytes")
        timeout_ms = _int(request, "timeout_ms", 0)
        if timeout_ms <= 0:
            raise RequestError("invalid", "timeout_ms must be a positive integer")
        env = request.get("env") or {}
        problem = wire.env_problems(env)
        if problem:
            raise RequestError("invalid", problem)
        cwd = request.get("cwd") or self.home
        problem = wire.path_problem(cwd)
        if problem:
            raise RequestError("invalid", f"cwd: {problem}")
        stdin = None
        if request.get("stdin_b64"):
            try:
                stdin = binascii.a2b_base64(_text(request, "stdin_b64"))
            except (binascii.Error, ValueError):
                raise RequestError("invalid", "stdin_b64 is not valid base64") from None
            if len(stdin) > wire.MAX_STDIN_BYTES:
                raise RequestError("too_large", f"stdin is larger than {wire.MAX_STDIN_BYTES} bytes")
        if request.get("background"):
            raise RequestError("invalid", "background programs are started with process_start (protocol 3)")
        session = bool(request.get("session")) and language in SESSION_LANGUAGES
        if session and stdin:
            raise RequestError("invalid", "stdin can only be given to one-shot runs and commands")
        isolated = bool(request.get("isolated"))
        if isolated and session:
            raise RequestError("invalid", "only one-shot runs can be isolated")
        files = _checked_files(request.get("files") or [], isolated)
        return {
            "id": request["id"],
            "language": language,
            "code": code,
            "session": session,
            "retire": bool(request.get("retire")),
            "timeout_ms": timeout_ms,
            "env": {**self.base_env, **env},
            "cwd": self.files.resolve(cwd),
            "stdin": stdin,
            "isolated": isolated,
            "files": files,
            "stdout_limit": max(0, _int(request, "stdout_limit", wire.DEFAULT_STDOUT_LIMIT)),
            "stderr_limit": max(0, _int(request, "stderr_limit", wire.DEFAULT_STDERR_LIMIT)),
        }

    def _start_exec(self, request):
        if request["retire"]:
            self.prefork = None
            self.spare_kind = None
        if not request["session"]:
            self.runs[request["id"]] = OneshotRun(self, request)
            if request["retire"]:
                self.spare_kind = None
            return
        worker = self.session_worker(request["language"], request["env"], request["cwd"])
        if worker.run is not None:
            raise RequestError("busy", "the session is already running a block; wait for it or cancel it")
        worker.start_run(request)
        self.runs[request["id"]] = worker

    def session_worker(self, language, env, cwd):
        """The live session interpreter for ``language``, started if needed."""
        previous = self.sessions.get(language)
        if previous is not None and previous.alive:
            return previous
        worker = SessionWorker(self, language, env, cwd)
        # a worker that died between blocks lost its state: say so on the next block
        worker.announce_reset = previous is not None and previous.died_idle
        self.sessions[language] = worker
        return worker


def _checked_files(files, isolated):
    """Re-check an isolated run's files: a list of {path, data_b64, mode}; [path, data_b64, mode] each."""
    if not files:
        return []
    if not isolated:
        raise RequestError("invalid", "files can only be given to isolated runs")
    if not isinstance(files, list) or len(files) > wire.MAX_RUN_FILES:
        raise RequestError("invalid", f"files must be a list of at most {wire.MAX_RUN_FILES} entries")
    checked = []
    for entry in files:
        if not isinstance(entry, dict):
            raise RequestError("invalid", "each file must be an object with path, data_b64 and mode")
        problem = wire.run_file_problem(entry.get("path"))
        if problem:
            raise RequestError("invalid", f"files: {problem}")
        data = _text(entry, "data_b64")
        if len(data) > (wire.MAX_FILE_BYTES * 4) // 3 + 4:
            raise RequestError("too_large", f"files: {entry['path']!r} is larger than {wire.MAX_FILE_BYTES} bytes")
        mode = _int(entry, "mode", 0o644)
        if not 0 <= mode <= 0o777:
            raise RequestError("invalid", "files: mode must be in [0, 0o777]")
        checked.append([entry["path"], data, mode])
    return checked


def _text(request, key):
    value = request.get(key)
    if not isinstance(value, str):
        raise RequestError("invalid", f"{key} must be a string")
    return value


def _int(request, key, default):
    value = request.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError("invalid", f"{key} must be an integer")
    return value


def main(argv=None):
    """Entry point: ``python3 -I agent.py CONFIG_JSON``; the protocol runs on stdin/stdout."""
    argv = sys.argv[1:] if argv is None else argv
    config = wire.loads(argv[0]) if argv else {"home": os.getcwd(), "env": {}}
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for fd in (proto_in, proto_out):
        os.set_inheritable(fd, False)
    user_cgroup = None
    if config.get("user_cgroup"):  # before Landlock: creating it needs the cgroup root
        from corral.agent.usercgroup import UserCgroup

        try:
            user_cgroup = UserCgroup(config["user_cgroup"])
        except OSError as exc:
            os.write(2, f"corral agent: no user cgroup ({exc}); limits fall back to rlimits\n".encode())
    if config.get("protect_agent"):
        set_dumpable(False)
    if "oom_score_adj" in config:
        child.write_quietly("/proc/self/oom_score_adj", str(int(config["oom_score_adj"])))
    agent = Agent(config, proto_in, proto_out, user_cgroup)
    # before Landlock, and before any request: see zygote.py
    agent.zygote = Zygote(agent, agent.lockdown, agent.run_mounts, agent.confinement, agent.protected)
    landlock_abi = 0
    if config.get("landlock_paths"):
        from corral.agent.landlock import restrict_writes

        landlock_abi = restrict_writes(config["landlock_paths"], scoped=True)
    if config.get("streams_fd") is not None:
        from corral.agent.hoststreams import HostStreams

        os.set_inheritable(config["streams_fd"], False)
        agent.host_streams = HostStreams(agent, config["streams_fd"])
    agent.send(
        {
            "type": "hello",
            "version": wire.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "landlock_abi": landlock_abi,
        }
    )
    agent.ensure_spare()
    agent.serve()
