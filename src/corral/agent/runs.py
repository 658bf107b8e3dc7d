"""Programs the agent runs: one-shot processes and long-lived session interpreters.

A :class:`OneshotRun` is one process tree for one request. A
:class:`SessionWorker` is a long-lived interpreter (Python forked from the
agent, or node) that runs many requests one after another and keeps its
state between them. Both stream output through :class:`OutputPipe`.
"""

from __future__ import annotations

import codecs
import errno
import os
import time

from corral.protocol import wire
from corral.agent import child, tree

_READ_CHUNK = 1 << 16
#: How long output is still collected after a run's main process exited
#: (a background grandchild may hold the pipe open forever).
EXIT_GRACE_S = 0.1
#: Reads of _READ_CHUNK at most when a pipe is drained at a run's end: a pipe buffer's worth and a little more.
DRAIN_READS = 4


class OutputPipe:
    """One output stream of a child: read, decoded, capped and forwarded as ``output`` events."""

    def __init__(self, agent, fd, stream, on_eof=None):
        self.agent = agent
        self.fd = fd
        self.stream = stream
        self.on_eof = on_eof
        self.request_id = None
        self.limit = 0
        self.sent = 0
        self.truncated = False
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        os.set_blocking(fd, False)
        agent.watch(fd, self.on_readable)

    def bind(self, request_id, limit):
        """Attribute what is read from now on to ``request_id``, at most ``limit`` bytes."""
        self.request_id = request_id
        self.limit = limit
        self.sent = 0
        self.truncated = False

    def on_readable(self):
        """Read what is available now (the fd is non-blocking); return True if data came."""
        try:
            data = os.read(self.fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.finish()
            return False
        self._forward(data)
        return True

    def drain(self):
        """Read what is already written to the pipe, bounded: a leftover writer must not keep the agent here."""
        for _ in range(DRAIN_READS):
            if self.eof or not self.on_readable():
                return

    def flush_decoder(self):
        """Forward an incomplete trailing character, if any."""
        self._forward(b"", final=True)

    def finish(self):
        """Stop reading: EOF, or the run is over."""
        if not self.eof:
            self.eof = True
            self.flush_decoder()
            self.agent.unwatch(self.fd)
            os.close(self.fd)
            if self.on_eof is not None:
                self.on_eof()

    def _forward(self, data, final=False):
        if self.request_id is None:
            return
        room = self.limit - self.sent
        if len(data) > room:
            data = data[: max(room, 0)]
            self.truncated = True
        self.sent += len(data)
        text = self._decoder.decode(data, final)
        if text:
            self.agent.send({"type": "output", "id": self.request_id, "stream": self.stream, "data": text})


class StdinWriter:
    """Feeds a run's stdin without blocking the agent, then closes it."""

    def __init__(self, agent, fd, data):
        self.agent = agent
        self.fd = fd
        self.view = memoryview(data)
        os.set_blocking(fd, False)
        agent.watch(fd, self.on_writable, writable=True)

    def on_writable(self):
        """Write as much as the pipe takes; close when done or the reader is gone."""
        try:
            written = os.write(self.fd, self.view[: 1 << 16])
            self.view = self.view[written:]
        except BlockingIOError:
            return True
        except OSError:
            self.view = self.view[:0]
        if self.view:
            return True
        self.close()
        return False

    def close(self):
        """Close the pipe (idempotent)."""
        if self.fd is not None:
            self.agent.unwatch(self.fd)
            os.close(self.fd)
            self.fd = None


def _fork_child(setup, python_entry, argv):
    """Fork a child that runs ``python_entry(setup)`` in this interpreter, or else execs ``argv``.

    Returns the child's pid (in the parent only: neither branch returns in the child).
    """
    pid = os.fork()
    if pid == 0:
        if python_entry is not None:
            python_entry(setup)
        child.exec_program(setup, argv)
    return pid


def _node_script(name):
    """Command line running one of the agent's node scripts."""
    return ["node", os.path.join(os.path.dirname(__file__), name)]


def _program_child(language, code, request_id, scratch_dir):
    """(python entry, argv) for a fresh one-shot process running ``code``."""
    if language == "python":
        return (lambda setup: child.run_python_oneshot(setup, code)), None
    return None, child.program_argv(language, code, request_id, scratch_dir)


class Spare:
    """A child started ahead of time, waiting for the code of the next one-shot run.

    Python: a fork of the agent's own interpreter. JavaScript: a node process
    running ``spare.js``. Either way a run skips the start-up on its hot path.
    """

    def __init__(self, agent, language, isolated=False):
        self.agent = agent
        self.language = language
        self.isolated = isolated
        in_r, self.in_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        ctl_r, self.ctl_w = os.pipe()
        #: Where an isolated Python run reports its exit status before it exits (None: not isolated).
        self.done_r = None
        if isolated:  # forked by the zygote, which never handled a request (see zygote.py)
            self.done_r, done_w = os.pipe()
            try:
                self.pid = pid = agent.zygote.spawn(
                    (in_r, out_w, err_w, ctl_r, done_w), language, agent.home, agent.base_env, agent.rlimits,
                    agent.lockdown.seccomp_program, own_network=agent.egress is None)
            except BaseException:
                for fd in (in_r, out_w, err_w, ctl_r, done_w, self.in_w, self.out_r, self.err_r, self.ctl_w,
                           self.done_r):
                    os.close(fd)
                raise
            os.close(done_w)
        else:
            setup = child.ChildSetup(in_r, out_w, err_w, agent.home, agent.base_env, agent.rlimits,
                                     confinement=agent.confinement, control_fds=(ctl_r, None),
                                     protected_parent=agent.protected, lockdown=agent.lockdown)
            python = child.serve_spare if language == "python" else None
            self.pid = pid = _fork_child(setup, python, _node_script("spare.js"))
        for fd in (in_r, out_w, err_w, ctl_r):
            os.close(fd)
        agent.adopt(pid, self)

    def hand_over(self, request):
        """Give the spare its code; return (pid, stdin write end, stdout and stderr read ends).

        The run now owns ``done_r`` too (if any).
        """
        message = {"code": request["code"], "env": request["env"], "cwd": request["cwd"]}
        if self.isolated:
            message.update(language=request["language"], files=request["files"], home=self.agent.home,
                           report_fd=child.SESSION_OUT_FD)
        frame = wire.dumps(message)
        _write_all(self.ctl_w, frame.encode("utf-8", "surrogatepass") + b"\n")
        os.close(self.ctl_w)
        return self.pid, self.in_w, self.out_r, self.err_r

    def discard(self):
        """Kill the unused spare (its exit is reaped like any other)."""
        if self.isolated:
            self.agent.zygote.kill(self.pid)
            return
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass

    def on_exit(self, status):
        """The spare died before it was used (killed by user code, out of memory): drop it."""
        for fd in (self.in_w, self.out_r, self.err_r, self.ctl_w, self.done_r):
            try:
                if fd is not None:
                    os.close(fd)
            except OSError:
                pass
        if self.agent.spare is self:
            self.agent.spare = None


class OneshotRun:
    """One request run in a fresh process tree."""

    def __init__(self, agent, request):
        self.agent = agent
        self.request_id = request["id"]
        self.stdout_limit = request["stdout_limit"]
        self.stderr_limit = request["stderr_limit"]
        self.received = time.monotonic()
        self.since_ticks = tree.uptime_ticks()
        self.accounting = agent.accounting_start()
        self.status = None
        self.timed_out = False
        self.cancelled = False
        self.finished = False
        self.stdin_writer = None
        self.isolated = request["isolated"]
        #: Kill what is left of the run once exec_done is sent (an isolated run that reported its status).
        self.kill_when_answered = False
        self._spawn(request)

    def _spawn(self, request):
        stdin_data = request.get("stdin")
        isolated = request["isolated"]
        spare = self.agent.take_spare(request["language"], isolated)
        if spare is None and isolated:  # no isolated spare ready: make one now
            spare = Spare(self.agent, request["language"], isolated=True)
        self.started = time.monotonic()
        self.done_r = None
        if spare is not None:
            pid, in_w, out_r, err_r = spare.hand_over(request)
            self.done_r = spare.done_r
            if not stdin_data:
                os.close(in_w)
                in_w = None
        else:
            pid, in_w, out_r, err_r = self._fork(request, stdin_data)
        self.pid = pid
        self.spawned = time.monotonic()
        self.stdout = OutputPipe(self.agent, out_r, "stdout", on_eof=self._finish_if_closed)
        self.stdout.bind(self.request_id, self.stdout_limit)
        self.stderr = OutputPipe(self.agent, err_r, "stderr", on_eof=self._finish_if_closed)
        self.stderr.bind(self.request_id, self.stderr_limit)
        if in_w is not None:
            self.stdin_writer = StdinWriter(self.agent, in_w, stdin_data)
        self.agent.adopt(pid, self)
        if self.done_r is not None:
            os.set_blocking(self.done_r, False)
            self.agent.watch(self.done_r, self.on_done)
        self.timer = self.agent.call_at(self.received + request["timeout_ms"] / 1000, self.on_timeout)

    def on_done(self):
        """An isolated Python run reported its exit status: answer now, and make sure it ends.

        The status is the run's own word (its code could write anything there, as it
        could exit with anything); the zygote kills what is left of the run right
        after the answer went out, and before the agent asks it for the next spare
        (it takes the kill first: the next run never overlaps what is left of this one).
        """
        try:
            data = os.read(self.done_r, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._close_done()
        if self.status is not None:
            return
        try:
            code = int(data.strip() or b"x")
        except ValueError:
            return  # no status (the interpreter died): its exit will tell
        self.kill_when_answered = True  # after the answer: the zygote's kill (and the kernel's teardown) must not delay it
        self.on_exit((code & 0xFF) << 8)
        self.finish()

    def _close_done(self):
        if self.done_r is not None:
            self.agent.unwatch(self.done_r)
            os.close(self.done_r)
            self.done_r = None

    def _fork(self, request, stdin_data):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if stdin_data:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        setup = child.ChildSetup(in_r, out_w, err_w, request["cwd"], request["env"], self.agent.rlimits,
                                 protected_parent=self.agent.protected, confinement=self.agent.confinement,
                                 lockdown=self.agent.lockdown)
        with self.agent.as_user:
            python, argv = _program_child(request["language"], request["code"], self.request_id,
                                          self.agent.scratch_dir)
        pid = _fork_child(setup, python, argv)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        return pid, in_w, out_r, err_r

    def on_timeout(self):
        """The wall-clock limit passed: kill the whole tree."""
        if self.status is None:
            self.timed_out = True
            self.kill()

    def cancel(self):
        """The host asked to stop this run."""
        if self.status is None:
            self.cancelled = True
            self.kill()

    def kill(self):
        """Kill the process tree of this run."""
        self.agent.kill_tree(self.pid, self.since_ticks)

    def on_exit(self, status):
        """The main process ended; finish once its pipes close or after a short grace."""
        if self.status is not None:  # an isolated run that reported its status already
            return
        self.status = status
        self.exited = time.monotonic()
        self.agent.cancel_timer(self.timer)
        self.grace_timer = self.agent.call_at(self.exited + EXIT_GRACE_S, self.finish)
        self._finish_if_closed()

    def _finish_if_closed(self):
        if self.status is not None and self.stdout.eof and self.stderr.eof:
            self.finish()

    def finish(self):
        """Send ``exec_done`` once: the run is over."""
        if self.finished:
            return
        self.finished = True
        self.agent.cancel_timer(self.grace_timer)
        for pipe in (self.stdout, self.stderr):
            pipe.drain()
            pipe.finish()
        if self.stdin_writer is not None:
            self.stdin_writer.close()
        self._close_done()
        self.agent.forget_run(self.request_id)
        self.agent.send(
            exec_done(
                self.request_id,
                self.status,
                timed_out=self.timed_out,
                cancelled=self.cancelled,
                stdout_truncated=self.stdout.truncated,
                stderr_truncated=self.stderr.truncated,
                spawn_ms=(self.spawned - self.received) * 1000,
                process_ms=(self.exited - self.started) * 1000,
                **self.agent.accounting_report(self.accounting),
            )
        )
        if self.kill_when_answered:
            self.kill()
        self.agent.ensure_spare()


def exec_done(request_id, status, **fields):
    """The ``exec_done`` message for a wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        exit_code, signal_number = 128 + sig, sig
    else:
        exit_code, signal_number = os.waitstatus_to_exitcode(status), None
    return {"type": "exec_done", "id": request_id, "exit_code": exit_code, "signal": signal_number, **fields}


class SessionWorker:
    """A long-lived interpreter that keeps state across ``exec`` requests."""

    def __init__(self, agent, language, env, cwd):
        self.agent = agent
        self.language = language
        self.run = None
        self.status = None
        self.died_idle = False
        self.announce_reset = False
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ctl_r, self.ctl_w = os.pipe()
        self.result_r, res_w = os.pipe()
        stdin = os.open(os.devnull, os.O_RDONLY)
        setup = child.ChildSetup(stdin, out_w, err_w, cwd, env, agent.rlimits, control_fds=(ctl_r, res_w),
                                 protected_parent=agent.protected, confinement=agent.confinement,
                                 lockdown=agent.lockdown)
        python = child.serve_python_session if language == "python" else None
        self.pid = pid = _fork_child(setup, python, _node_script("session.js"))
        for fd in (out_w, err_w, ctl_r, res_w, stdin):
            os.close(fd)
        self.stdout = OutputPipe(agent, out_r, "stdout")
        self.stderr = OutputPipe(agent, err_r, "stderr")
        os.set_blocking(self.result_r, False)
        self._result_buffer = bytearray()
        self._discarding = False
        agent.watch(self.result_r, self.on_result)
        agent.adopt(pid, self)

    @property
    def alive(self):
        """True while the interpreter process runs."""
        return self.status is None

    def start_run(self, request):
        """Send one code block to the interpreter."""
        received = time.monotonic()
        self.run = {
            "id": request["id"],
            # a timeout kills orphans started since this block began, not since the worker did
            "since": tree.uptime_ticks(),
            "accounting": self.agent.accounting_start(),
            "received": received,
            "timed_out": False,
            "cancelled": False,
            "timer": self.agent.call_at(received + request["timeout_ms"] / 1000, self.on_timeout),
            "spawned": received,
            "results": 0,
        }
        self.stdout.bind(request["id"], request["stdout_limit"])
        self.stderr.bind(request["id"], request["stderr_limit"])
        frame = wire.dumps({"code": request["code"], "env": request["env"], "cwd": request["cwd"]}).encode(
            "utf-8", "surrogatepass"
        ) + b"\n"
        try:
            _write_all(self.ctl_w, frame)
        except OSError:
            pass  # the worker died; its exit finishes the run
        self.run["spawned"] = time.monotonic()

    def on_result(self):
        """The interpreter reported a result, an error or the end of the current block (one JSON line each).

        The worker is user code and can write anything there: a line longer than a result may be
        is dropped as it arrives, never buffered whole.
        """
        try:
            data = os.read(self.result_r, _READ_CHUNK)
        except BlockingIOError:
            return True
        if not data:
            self.agent.unwatch(self.result_r)
            return False
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return True
            data = data[newline + 1:]
            self._discarding = False
        scanned = len(self._result_buffer)
        self._result_buffer += data
        while True:
            newline = self._result_buffer.find(b"\n", scanned)
            if newline < 0:
                break
            line = bytes(self._result_buffer[:newline])
            del self._result_buffer[:newline + 1]
            scanned = 0
            self._on_result_line(line)
        if len(self._result_buffer) > wire.MAX_RESULT_BYTES + 1024:
            self._result_buffer.clear()
            self._discarding = True
        return True

    def _on_result_line(self, line):
        """One line from the worker: the block's end, a rich result or the block's error."""
        try:
            message = wire.loads(line.decode("utf-8", "surrogatepass"))
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(message, dict) or self.run is None:
            return
        if "exit_code" in message:
            code = message["exit_code"]
            self._finish_run((code if isinstance(code, int) and not isinstance(code, bool) else 1) << 8)
        elif isinstance(message.get("result"), dict) and self.run["results"] < wire.MAX_RESULTS:
            data = {mime: value for mime, value in message["result"].items() if isinstance(mime, str)}
            self.run["results"] += 1
            self.agent.send({"type": "result", "id": self.run["id"], "data": data,
                             "is_main_result": message.get("main") is True})
        elif isinstance(message.get("error"), dict):
            error = message["error"]
            fields = {key: error.get(key) if isinstance(error.get(key), str) else "" for key in
                      ("name", "value", "traceback")}
            self.agent.send({"type": "run_error", "id": self.run["id"], **fields})

    def on_timeout(self):
        """The current block ran too long: kill the interpreter (state is lost)."""
        if self.run is not None:
            self.run["timed_out"] = True
            self.agent.kill_tree(self.pid, self.run["since"])

    def cancel(self):
        """Stop the current block by killing the interpreter (state is lost)."""
        if self.run is not None:
            self.run["cancelled"] = True
            self.agent.kill_tree(self.pid, self.run["since"])

    def on_exit(self, status):
        """The interpreter died: finish the current block and mark the session reset."""
        self.status = status
        self.died_idle = self.run is None
        if self.run is not None:
            self._finish_run(status)
        for pipe in (self.stdout, self.stderr):
            pipe.drain()
            pipe.finish()
        for fd in (self.ctl_w, self.result_r):
            self.agent.unwatch(fd)
            try:
                os.close(fd)
            except OSError:
                pass

    def _finish_run(self, status):
        run, self.run = self.run, None
        self.agent.cancel_timer(run["timer"])
        for pipe in (self.stdout, self.stderr):
            pipe.drain()
            pipe.flush_decoder()
        finished = time.monotonic()
        reset = self.status is not None or self.announce_reset
        self.announce_reset = False
        self.agent.forget_run(run["id"])
        self.agent.send(
            exec_done(
                run["id"],
                status,
                timed_out=run["timed_out"],
                cancelled=run["cancelled"],
                stdout_truncated=self.stdout.truncated,
                stderr_truncated=self.stderr.truncated,
                session_reset=reset,
                spawn_ms=(run["spawned"] - run["received"]) * 1000,
                process_ms=(finished - run["spawned"]) * 1000,
                **self.agent.accounting_report(run["accounting"]),
            )
        )
        self.stdout.bind(None, 0)
        self.stderr.bind(None, 0)



def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except BlockingIOError:
            time.sleep(0.001)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
