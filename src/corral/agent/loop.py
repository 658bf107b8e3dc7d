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

from corral.agent import child, reset, tree
from corral.agent.dumpable import set_dumpable
from corral.agent.files import FileOpError, Files
from corral.agent.runs import BackgroundProgram, OneshotRun, SessionWorker, Spare
from corral.protocol import wire

SESSION_LANGUAGES = ("python", "javascript")


class RequestError(Exception):
    """A request is malformed or cannot be served; ``code`` is a protocol error code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Agent:
    """Serves protocol requests arriving on ``proto_in``; writes events to ``proto_out``."""

    def __init__(self, config, proto_in, proto_out):
        self.home = config["home"]
        self.base_env = dict(config["env"])
        self.rlimits = dict(config.get("rlimits", {}))
        self.scratch_dir = config.get("scratch_dir", "/tmp/.corral")
        self.protected = bool(config.get("protect_agent"))
        #: Language of the one-shot child kept started ahead ("python", "javascript" or None).
        self.prefork = config.get("prefork") if config.get("prefork") in SESSION_LANGUAGES else None
        self.wipe_paths = [(path, mode) for path, mode in config.get("wipe_paths", [])]
        self.spare = None
        self.pairs = set()
        self.egress = None
        self.background = {}
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.pid = os.getpid()
        self.files = Files(self.home)
        self.epoll = select.epoll()
        self.handlers = {}
        self.timers = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = set()
        self.children = {}
        self.runs = {}
        self.sessions = {}
        self._input = b""
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
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            owner = self.children.pop(pid, None)
            if owner is not None:
                owner.on_exit(status)

    def take_spare(self, language):
        """The spare child for ``language``, now owned by the caller (None if there is none)."""
        if self.spare is None or self.spare.language != language:
            return None
        spare, self.spare = self.spare, None
        return spare

    def ensure_spare(self):
        """Start a spare child for one-shot runs if pre-forking is on and none is waiting.

        Called at start (the host put the agent in its cgroup before it started)
        and after each answered request, so forking stays off the hot path.
        """
        if self.prefork and self.spare is None and self.running:
            self.spare = Spare(self, self.prefork)

    def kill_tree(self, root, since_ticks):
        """Kill ``root``, its descendants and the orphans started since ``since_ticks``."""
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
        """Kill everything the agent started."""
        for pid in list(self.children):
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
        self._input += chunk
        while True:
            line, newline, rest = self._input.partition(b"\n")
            if not newline:
                if len(self._input) > wire.MAX_FRAME_BYTES:
                    self._input = b""
                    self._discarding = True
                    self.send({"type": "error", "id": None, "code": "too_large", "message": "request frame too large"})
                return
            self._input = rest
            if self._discarding:
                self._discarding = False
                continue
            self._handle_line(line)

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
        except FileOpError as exc:
            self.send({"type": "error", "id": request_id, "code": exc.code, "message": str(exc)})
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
        elif kind == "file_write":
            size = self.files.write(request.get("path"), _text(request, "data_b64"), _int(request, "mode", 0o644))
            self.send({"type": "ack", "id": request_id, "size": size})
        elif kind == "file_read":
            self.send({"type": "file_data", "id": request_id, "data_b64": self.files.read(request.get("path"))})
        elif kind == "file_list":
            self.send({"type": "dir_listing", "id": request_id, "entries": self.files.list(request.get("path"))})
        elif kind == "file_remove":
            self.files.remove(request.get("path"), bool(request.get("recursive")))
            self.send({"type": "ack", "id": request_id})
        elif kind == "cancel":
            target = self.runs.get(request.get("target"))
            if target is None:
                raise RequestError("unknown_target", f"no running operation {request.get('target')!r}")
            target.cancel()
            self.send({"type": "ack", "id": request_id})
        elif kind == "ping":
            self.send({"type": "ack", "id": request_id})
        elif kind == "egress":
            self._egress(bool(request.get("enable")), _int(request, "port", wire.EGRESS_RELAY_PORT))
            self.send({"type": "ack", "id": request_id})
        elif kind == "port_connect":
            from corral.agent.relay import connect_port, service_path

            try:
                connect_port(self, _int(request, "port", 0), _text(request, "token"), service_path(wire.PORTS_SOCKET))
            except OSError as exc:
                raise RequestError("not_found", f"cannot connect to port {request.get('port')}: {exc.strerror or exc}")
            self.send({"type": "ack", "id": request_id})
        elif kind == "reset":
            self._reset()
            self.send({"type": "ack", "id": request_id})
        elif kind in ("pty_open", "pty_input", "pty_resize"):  # interactive terminals: corral.agent.pty
            from corral.agent.pty import PtyError, handle

            try:
                handle(self, request)
            except PtyError as exc:
                raise RequestError(exc.code, str(exc)) from None
        else:
            raise RequestError("invalid", f"unknown request type {kind!r}")

    def _egress(self, enable, port):
        """Start or stop the in-sandbox end of the egress proxy."""
        from corral.agent.relay import EgressRelay, service_path

        if enable and self.egress is None:
            try:
                self.egress = EgressRelay(self, port, service_path(wire.EGRESS_SOCKET))
            except OSError as exc:
                raise RequestError("busy", f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        elif not enable and self.egress is not None:
            self.egress.close()
            self.egress = None

    def _reset(self):
        """Kill everything, empty the writable places, forget sessions and the spare."""
        if self.runs:
            raise RequestError("busy", "cannot reset while operations are running")
        if not reset.kill_everything_but(self.pid, self.reap):
            raise RequestError("internal", "processes kept appearing while the sandbox was reset")
        self.spare = None
        self.sessions.clear()
        self.background.clear()
        for pair in list(self.pairs):
            pair.close()
        self._egress(False, 0)
        for path, mode in self.wipe_paths:
            reset.empty_directory(path, mode)
        reset.remove_sysv_ipc()

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
        background = bool(request.get("background"))
        session = bool(request.get("session")) and language in SESSION_LANGUAGES and not background
        if session and stdin:
            raise RequestError("invalid", "stdin can only be given to one-shot runs and commands")
        return {
            "id": request["id"],
            "language": language,
            "code": code,
            "session": session,
            "background": background,
            "retire": bool(request.get("retire")),
            "timeout_ms": timeout_ms,
            "env": {**self.base_env, **env},
            "cwd": self.files.resolve(cwd),
            "stdin": stdin,
            "stdout_limit": max(0, _int(request, "stdout_limit", wire.DEFAULT_STDOUT_LIMIT)),
            "stderr_limit": max(0, _int(request, "stderr_limit", wire.DEFAULT_STDERR_LIMIT)),
        }

    def _start_exec(self, request):
        if request["retire"]:
            self.prefork = None
        if request["background"]:
            program = BackgroundProgram(self, request)
            self.send({"type": "started", "id": request["id"], "pid": program.pid, "log_path": program.log_path})
            return
        if not request["session"]:
            self.runs[request["id"]] = OneshotRun(self, request)
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
    landlock_abi = 0
    if config.get("landlock_paths"):
        from corral.agent.landlock import restrict_writes

        landlock_abi = restrict_writes(config["landlock_paths"])
    if config.get("protect_agent"):
        set_dumpable(False)
    agent = Agent(config, proto_in, proto_out)
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
