"""Interactive terminals: a program on a pseudo-terminal, its screen streamed to the host.

``pty_open`` forks a child whose stdin, stdout and stderr are the slave side
of a new pseudo-terminal (its controlling terminal, in a session of its own),
set up like every other child (limits, env, directory), and answers
``process_started`` with its pid (``log_path`` empty). What the program
writes is sent as ``output`` events (stream ``stdout``, UTF-8 decoded) with
the open request's id; ``exec_done`` ends it. ``pty_input`` writes keystrokes
to it, ``pty_resize`` sets its window size (the kernel sends SIGWINCH), and
``cancel`` kills its process tree.
"""

from __future__ import annotations

import binascii
import codecs
import errno
import fcntl
import os
import struct
import termios
try:  # the C module: ``signal`` wraps it in enums, which cost ~1.5 ms to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

from corral.agent import child
from corral.agent.runs import exec_done
from corral.protocol import wire

MAX_DIMENSION = 1000
MAX_INPUT_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024


class PtyError(Exception):
    """A PTY request cannot be served; ``code`` is a protocol error code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def handle(agent, request):
    """Serve ``pty_open``, ``pty_input`` or ``pty_resize``."""
    kind = request["type"]
    if kind == "pty_open":
        PtySession(agent, request)
        return
    session = agent.runs.get(request.get("target"))
    if not isinstance(session, PtySession):
        raise PtyError("unknown_target", f"no open terminal {request.get('target')!r}")
    if kind == "pty_input":
        session.write(_base64(request.get("data_b64")))
    else:
        session.resize(_dimension(request, "cols"), _dimension(request, "rows"))
    agent.send({"type": "ack", "id": request["id"]})


class PtySession:
    """One program on a pseudo-terminal."""

    def __init__(self, agent, request):
        self.agent = agent
        self.id = request["id"]
        cols, rows = _dimension(request, "cols"), _dimension(request, "rows")
        command = request.get("command")
        if command is not None and (not isinstance(command, str) or len(command) > wire.MAX_CODE_BYTES):
            raise PtyError("invalid", "command must be a string of at most 1 MiB")
        env = request.get("env") or {}
        problem = wire.env_problems(env)
        if problem:
            raise PtyError("invalid", problem)
        cwd = agent.files.resolve(request.get("cwd") or agent.home)
        argv = ["bash", "-c", command] if command else ["bash", "-i"]
        env = {**agent.base_env, "TERM": "xterm-256color", **env}
        master, slave = os.openpty()
        _set_size(master, cols, rows)
        setup = child.ChildSetup(slave, slave, slave, cwd, env, agent.rlimits, protected_parent=agent.protected,
                                 confinement=agent.confinement, lockdown=agent.lockdown)
        self.pid = os.fork()
        if self.pid == 0:
            _become_terminal_program(setup, argv)
        os.close(slave)
        self.master = master
        self.status = None
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        os.set_blocking(master, False)
        agent.watch(master, self.on_readable)
        agent.adopt(self.pid, self)
        agent.runs[self.id] = self
        agent.send({"type": "process_started", "id": self.id, "pid": self.pid, "log_path": ""})

    def on_readable(self):
        """Forward what the program wrote."""
        try:
            data = os.read(self.master, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave fd is closed (the program exited)
            data = b""
        if not data:
            self._close_master()
            return
        self._send_text(self._decoder.decode(data))

    def write(self, data):
        """Type ``data`` into the terminal."""
        if len(data) > MAX_INPUT_BYTES:
            raise PtyError("too_large", f"input is larger than {MAX_INPUT_BYTES} bytes")
        if self.master is None:
            raise PtyError("unknown_target", "the terminal has closed")
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                raise PtyError("busy", "the terminal is not reading its input") from None
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise PtyError("unknown_target", "the terminal has closed") from None
                raise

    def resize(self, cols, rows):
        """Set the window size."""
        if self.master is not None:
            _set_size(self.master, cols, rows)

    def cancel(self):
        """Kill the program and everything it started."""
        self.agent.kill_tree(self.pid, 0)

    def on_exit(self, status):
        """The program exited: forward what it left in the terminal, then report."""
        self.status = status
        while self.master is not None:
            try:
                data = os.read(self.master, _READ_CHUNK)
            except BlockingIOError:
                break  # a descendant may still hold the terminal: it gets a hangup
            except OSError:
                break
            if not data:
                break
            self._send_text(self._decoder.decode(data))
        self._close_master()

    def _close_master(self):
        if self.master is not None:
            self._send_text(self._decoder.decode(b"", True))
            self.agent.unwatch(self.master)
            os.close(self.master)
            self.master = None
        self.eof = True
        if self.status is not None and self.agent.runs.get(self.id) is self:
            self.agent.forget_run(self.id)
            self.agent.send(exec_done(self.id, self.status))

    def _send_text(self, text):
        if text:
            self.agent.send({"type": "output", "id": self.id, "stream": "stdout", "data": text})


def _become_terminal_program(setup, argv):
    """In the child: set up, take the terminal as controlling terminal, exec ``argv``. Never returns."""
    try:
        setup.apply()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execvpe(argv[0], argv, setup.env)
    except BaseException as exc:  # a forked child must never return into the agent's loop
        os.write(2, f"corral: cannot start {argv[0]}: {exc}\n".encode(errors="replace"))
    os._exit(127)


def _set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _dimension(request, key):
    value = request.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DIMENSION:
        raise PtyError("invalid", f"{key} must be an integer from 1 to {MAX_DIMENSION}")
    return value


def _base64(value):
    if not isinstance(value, str):
        raise PtyError("invalid", "data_b64 must be a string")
    try:
        return binascii.a2b_base64(value)
    except (binascii.Error, ValueError):
        raise PtyError("invalid", "data_b64 is not valid base64") from None
