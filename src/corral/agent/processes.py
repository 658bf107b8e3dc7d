"""Processes with handles: started by ``process_start``, addressed by pid until they exit.

A :class:`ManagedProcess` is a ``bash -c`` command the agent keeps track of:
its stdout and stderr come back through pipes the agent reads, are appended to
a log file, kept in a bounded replay buffer and forwarded to every
:class:`Attachment` (the starting request, and each ``process_attach``); its
stdin is a pipe fed from ``process_input`` without blocking the loop. It
belongs to the sandbox, not to a run: it has no deadline unless one was asked
for, and it is killed by ``reset`` and when the sandbox ends.
"""

from __future__ import annotations

import binascii
import codecs
import collections
import os
import time

from corral.agent import child, tree
from corral.agent.runs import EXIT_GRACE_S, exec_done
from corral.protocol import wire

_READ_CHUNK = 1 << 16
#: Reads of _READ_CHUNK at most when a pipe is closed: one pipe buffer's worth (64 KiB) and a little more.
_DRAIN_CHUNKS = 4
#: Signals ``process_signal`` may send.
SIGNALS = (1, 2, 9, 15)


class ProcessError(Exception):
    """A process request cannot be served; ``code`` is a protocol error code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def handle(agent, request):
    """Serve one ``process_*`` request."""
    kind = request["type"]
    if kind == "process_start":
        if len(agent.processes) >= wire.MAX_PROCESSES:
            raise ProcessError("busy", f"at most {wire.MAX_PROCESSES} processes may run at once")
        ManagedProcess(agent, request)
        return
    if kind == "process_list":
        agent.send({"type": "process_list", "id": request["id"],
                    "processes": [process.describe() for process in agent.processes.values()]})
        return
    pid = request.get("pid")
    process = agent.processes.get(pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
    if process is None:
        raise ProcessError("not_found", f"no running process {pid!r}")
    if kind == "process_attach":
        Attachment(process, request["id"], replay=bool(request.get("replay")))
        return
    if kind == "process_input":
        data = request.get("data_b64")
        if not isinstance(data, str):
            raise ProcessError("invalid", "data_b64 must be a string")
        try:
            process.write_stdin(binascii.a2b_base64(data))
        except (binascii.Error, ValueError):
            raise ProcessError("invalid", "data_b64 is not valid base64") from None
    elif kind == "process_close_stdin":
        process.close_stdin()
    elif kind == "process_signal":
        signal_number = request.get("signal", 9)
        if signal_number not in SIGNALS or isinstance(signal_number, bool):
            raise ProcessError("invalid", f"signal must be one of {SIGNALS}")
        process.signal(signal_number)
    else:
        raise ProcessError("invalid", f"unknown request type {kind!r}")
    agent.send({"type": "ack", "id": request["id"]})


class Attachment:
    """One request that receives a process's output: ``output`` events, then ``exec_done``.

    ``cancel`` (a ``cancel`` request naming this id) detaches: the attachment ends
    with an ``ack`` and the process runs on.
    """

    def __init__(self, process, request_id, replay):
        self.process = process
        self.id = request_id
        agent = process.agent
        agent.send({"type": "process_started", "id": request_id, "pid": process.pid, "log_path": process.log_path})
        if replay:
            for stream, text in process.replay:
                agent.send({"type": "output", "id": request_id, "stream": stream, "data": text})
        process.attachments[request_id] = self
        agent.attachments[request_id] = self

    def cancel(self):
        """Stop receiving output; the process keeps running."""
        self.process.attachments.pop(self.id, None)
        self.process.agent.attachments.pop(self.id, None)
        self.process.agent.send({"type": "ack", "id": self.id})


class _StdinPipe:
    """A process's stdin: bytes queued by ``process_input``, written when the pipe has room."""

    def __init__(self, agent, fd):
        self.agent = agent
        self.fd = fd
        self.pending = bytearray()
        self.closing = False
        os.set_blocking(fd, False)

    def write(self, data):
        if self.fd is None or self.closing:
            raise ProcessError("invalid", "the process's stdin is closed")
        if len(self.pending) + len(data) > wire.MAX_STDIN_BYTES:
            raise ProcessError("busy", "the process is not reading its stdin")
        was_idle = not self.pending
        self.pending += data
        if was_idle:
            self.agent.watch(self.fd, self.on_writable, writable=True)
            self.on_writable()

    def close(self):
        """Close once everything queued is written."""
        self.closing = True
        if not self.pending:
            self._close_now()

    def on_writable(self):
        try:
            written = os.write(self.fd, self.pending[:_READ_CHUNK])
            del self.pending[:written]
        except BlockingIOError:
            return
        except OSError:  # the reader is gone: what is left can never be read
            self.pending.clear()
        if not self.pending:
            self.agent.unwatch(self.fd)
            if self.closing:
                self._close_now()

    def _close_now(self):
        if self.fd is not None:
            self.agent.unwatch(self.fd)
            os.close(self.fd)
            self.fd = None


class ManagedProcess:
    """A command started with ``process_start``; see the module docstring."""

    def __init__(self, agent, request):
        self.agent = agent
        self.request_id = request["id"]
        self.cmd = _text(request, "cmd")
        if len(self.cmd.encode("utf-8", "surrogatepass")) > wire.MAX_CODE_BYTES:
            raise ProcessError("too_large", f"cmd is larger than {wire.MAX_CODE_BYTES} bytes")
        env = request.get("env") or {}
        problem = wire.env_problems(env)
        if problem:
            raise ProcessError("invalid", problem)
        self.env = dict(env)
        tag = request.get("tag")
        if tag is not None and (not isinstance(tag, str) or len(tag) > 256):
            raise ProcessError("invalid", "tag must be a string of at most 256 characters")
        self.tag = tag
        timeout_ms = request.get("timeout_ms", 0)
        if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms < 0:
            raise ProcessError("invalid", "timeout_ms must be a non-negative integer")
        self.cwd = agent.files.resolve(request.get("cwd") or agent.home)
        self.since_ticks = tree.uptime_ticks()
        self.started = time.monotonic()
        self.status = None
        self.timed_out = False
        self.finished = False
        self.attachments = {}
        #: The latest output, (stream, text) chunks of at most ``wire.PROCESS_REPLAY_BYTES`` in all.
        self.replay = collections.deque()
        self._replay_bytes = 0
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")}
        self._open_pipes = 2
        with agent.as_user:
            os.makedirs(agent.scratch_dir, mode=0o700, exist_ok=True)
            self.log_path = os.path.join(agent.scratch_dir, f"process-{self.request_id}.log")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
            self.log_fd = os.open(self.log_path, flags, 0o600)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if request.get("stdin"):
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        setup = child.ChildSetup(in_r, out_w, err_w, self.cwd, {**agent.base_env, **self.env}, agent.rlimits,
                                 protected_parent=agent.protected, confinement=agent.confinement,
                                 lockdown=agent.lockdown)
        with agent.as_user:
            argv = child.program_argv("shell", self.cmd, f"process-{self.request_id}", agent.scratch_dir)
        try:
            self.pid = os.fork()
        except OSError:  # out of processes: nothing of this start may stay open
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w, self.log_fd):
                if fd is not None:
                    os.close(fd)
            raise
        if self.pid == 0:
            child.exec_program(setup, argv)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.stdin = _StdinPipe(agent, in_w) if in_w is not None else None
        self.pipes = {}
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.pipes[stream] = fd
            agent.watch(fd, lambda fd=fd, stream=stream: self._on_readable(fd, stream))
        agent.adopt(self.pid, self)
        agent.processes[self.pid] = self
        self.timer = agent.call_at(self.started + timeout_ms / 1000, self._on_timeout) if timeout_ms else None
        self.grace_timer = None
        Attachment(self, self.request_id, replay=False)

    def describe(self):
        """The ``process_list`` entry of this process."""
        return {"pid": self.pid, "cmd": self.cmd, "cwd": self.cwd, "env": self.env, "tag": self.tag,
                "stdin": self.stdin is not None and self.stdin.fd is not None and not self.stdin.closing}

    def write_stdin(self, data):
        """Queue ``data`` for the process's stdin."""
        if self.stdin is None:
            raise ProcessError("invalid", "the process was started without stdin")
        self.stdin.write(data)

    def close_stdin(self):
        """Send EOF once everything queued is written."""
        if self.stdin is None:
            raise ProcessError("invalid", "the process was started without stdin")
        self.stdin.close()

    def signal(self, signal_number):
        """Signal the process's group (it leads a session of its own); SIGKILL also takes its descendants.

        Unlike a timeout, an explicit kill spares orphans re-parented to the agent: after a long
        life, "started since this process" would take other commands' daemons too.
        """
        if self.status is not None:  # reaped already (its output is still being collected): the pid may be reused
            return
        for send in (os.killpg, os.kill):
            try:
                send(self.pid, signal_number)
                break
            except (ProcessLookupError, PermissionError):
                continue
        if signal_number == 9:
            self.agent.kill_tree(self.pid, float("inf"))

    def _on_timeout(self):
        self.timer = None
        if self.status is None:
            self.timed_out = True
            self.agent.kill_tree(self.pid, self.since_ticks)

    def _on_readable(self, fd, stream):
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._close_pipe(stream)
            return False
        self._forward(stream, data)
        return True

    def _forward(self, stream, data, final=False):
        if data:
            try:
                os.write(self.log_fd, data)
            except OSError:  # a full /tmp: the log misses it, the handles do not
                pass
        text = self._decoders[stream].decode(data, final)
        if not text:
            return
        self.replay.append((stream, text))
        self._replay_bytes += len(text)
        while self._replay_bytes > wire.PROCESS_REPLAY_BYTES and len(self.replay) > 1:
            self._replay_bytes -= len(self.replay.popleft()[1])
        for request_id in list(self.attachments):
            self.agent.send({"type": "output", "id": request_id, "stream": stream, "data": text})

    def _close_pipe(self, stream):
        fd = self.pipes.pop(stream, None)
        if fd is None:
            return
        for _ in range(_DRAIN_CHUNKS):  # what is left in the pipe, bounded: a leftover writer never runs dry
            try:
                data = os.read(fd, _READ_CHUNK)
            except OSError:
                break
            if not data:
                break
            self._forward(stream, data)
        self._forward(stream, b"", final=True)
        self.agent.unwatch(fd)
        os.close(fd)
        if self.status is not None and not self.pipes:
            self._finish()

    def on_exit(self, status):
        """The main process ended; finish once its pipes close or after a short grace."""
        self.status = status
        self.exited = time.monotonic()
        if self.timer is not None:
            self.agent.cancel_timer(self.timer)
        if not self.pipes:
            self._finish()
        else:
            self.grace_timer = self.agent.call_at(self.exited + EXIT_GRACE_S, self._finish)

    def _finish(self):
        if self.finished:
            return
        self.finished = True
        if self.grace_timer is not None:
            self.agent.cancel_timer(self.grace_timer)
        for stream in list(self.pipes):
            self._close_pipe(stream)
        if self.stdin is not None:
            self.stdin._close_now()
        os.close(self.log_fd)
        self.agent.processes.pop(self.pid, None)
        for request_id in list(self.attachments):
            self.agent.attachments.pop(request_id, None)
            self.agent.send(exec_done(request_id, self.status, timed_out=self.timed_out,
                                      process_ms=(self.exited - self.started) * 1000))
        self.attachments.clear()


def _text(request, key):
    value = request.get(key)
    if not isinstance(value, str):
        raise ProcessError("invalid", f"{key} must be a string")
    return value
