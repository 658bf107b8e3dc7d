"""What a freshly forked child of the agent does before and instead of returning.

Everything here runs in the child after ``os.fork()``: set up the process
(session, fds, limits), then either run Python code in this already-started
interpreter (the zygote path: no interpreter start-up cost) or ``execve`` a
program (node, bash). None of these functions return.
"""

from __future__ import annotations

import atexit  # here, not when a run ends: a first import in a forked child touches (copies) many pages
import os
import resource
try:  # the C module: ``signal`` wraps it in enums, which cost ~1.5 ms to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal
import sys

from corral.agent.dumpable import set_dumpable
from corral.protocol import wire

#: Signals the agent (PID 1) ignores; every child gets their defaults back.
AGENT_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

#: Where session workers find their control pipes after set-up.
SESSION_IN_FD = 3
SESSION_OUT_FD = 4


class Confinement:
    """What a child does to itself before it runs user code, where the agent is root (a VM guest):
    join the user cgroup (``cgroup_procs``), then become ``user`` = (uid, gid). Either may be None."""

    def __init__(self, user=None, cgroup_procs=None):
        self.user = user
        self.cgroup_procs = cgroup_procs

    def apply(self):
        """Join the cgroup, drop to the user; raises if the cgroup cannot be joined (no run outside it)."""
        if self.cgroup_procs is not None:
            with open(self.cgroup_procs, "w") as handle:
                handle.write("0")
        if self.user is not None:
            uid, gid = self.user
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)


class ChildSetup:
    """How to prepare a child process: its fds, directory, environment and limits."""

    def __init__(self, stdin_fd, stdout_fd, stderr_fd, cwd, env, rlimits, control_fds=None, protected_parent=False,
                 confinement=None, lockdown=None, isolated=False):
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.cwd = cwd
        self.env = env
        self.rlimits = rlimits
        self.control_fds = control_fds
        self.protected_parent = protected_parent
        #: A Confinement where the agent runs as root (the microVM guest); None: nothing to do.
        self.confinement = confinement
        #: The Lockdown (Landlock, seccomp) applied last, before any user code; None: none configured.
        self.lockdown = lockdown
        #: This child is the process of an isolated run (its own namespaces; see isolation.py).
        self.isolated = isolated

    def apply(self):
        """Make this process a clean child: own session, fds 0-2 (3-4), limits, cwd."""
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig in AGENT_IGNORED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(self.stdin_fd, 0)
        os.dup2(self.stdout_fd, 1)
        os.dup2(self.stderr_fd, 2)
        first_free = 3
        if self.control_fds is not None:
            # dup first so that overlapping numbers cannot clobber each other
            copies = [None if fd is None else os.dup(fd) for fd in self.control_fds]
            for copy, target in zip(copies, (SESSION_IN_FD, SESSION_OUT_FD)):
                if copy is not None:
                    os.dup2(copy, target)
                    os.set_inheritable(target, True)  # dup2 onto itself (copy == target) keeps CLOEXEC
            first_free = 5
        os.closerange(first_free, 1 << 20)
        if self.protected_parent:
            set_dumpable(True)
        write_quietly("/proc/self/oom_score_adj", "1000")
        for name, value in self.rlimits.items():
            limit = getattr(resource, name)
            _, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, value))
        if self.confinement is not None:
            self.confinement.apply()
        if self.lockdown is not None:
            self.lockdown.apply(self.isolated)
        try:
            os.chdir(self.cwd)
        except OSError as exc:
            os.write(2, f"corral: cannot change directory to {self.cwd}: {exc.strerror}\n".encode())
            os._exit(126)


#: Code passed on the command line up to this size; larger code goes to a file.
_MAX_INLINE_CODE = 100_000


def program_argv(language, code, request_id, scratch_dir):
    """Command line that runs ``code`` in a new node or shell process."""
    if len(code.encode()) > _MAX_INLINE_CODE:
        os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
        suffix = ".js" if language == "javascript" else ".sh"
        path = os.path.join(scratch_dir, f"run-{request_id}{suffix}")
        with open(path, "w") as handle:
            handle.write(code)
        return ["node", path] if language == "javascript" else ["bash", path]
    if language == "javascript":
        return ["node", "-e", code]
    return ["bash", "-c", code]


def write_quietly(path, text):
    """Write ``text`` to ``path``, ignoring errors (best-effort kernel knobs)."""
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError:
        pass


def exec_program(setup, argv):
    """Replace this child with ``argv`` (looked up on the child's PATH)."""
    try:
        setup.apply()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execvpe(argv[0], argv, setup.env)
    except BaseException as exc:  # a forked child must never return into the agent's loop
        os.write(2, f"corral: cannot start {argv[0]}: {exc}\n".encode(errors="replace"))
    os._exit(127)


def run_python_oneshot(setup, code):
    """Run ``code`` as ``python3 -c`` would, in this pre-started interpreter, then exit."""
    status = 1
    try:
        setup.apply()
        _reseed_interpreter()
        status = _run_as_main(code, setup.env, None)
    finally:
        os._exit(status)


def serve_spare(setup):
    """Be a spare: set up now, wait for one block of code on the control pipe, run it, exit.

    The agent forks a spare ahead of time, so a run costs no fork on its hot path.
    """
    status = 1
    try:
        setup.apply()
        _prefault(setup.env)
        with os.fdopen(SESSION_IN_FD, "rb", buffering=0) as control:
            line = _LineReader(control).readline()
        if not line:  # the agent went away without using us
            status = 0
        else:
            request = wire.loads(line.decode())
            _reseed_interpreter()
            status = _run_as_main(request["code"], request["env"], request["cwd"])
    finally:
        os._exit(status)


def serve_isolated_spare(setup, language):
    """Be the process of an isolated run: set up now, then wait for the run's request on the control pipe.

    The request brings the code and the files to write into the run's fresh home
    first. Python runs in this interpreter and then reports its exit status on
    the result pipe (fd 4) before it exits, so the agent can answer before the
    kernel has torn the run's namespaces down; a JavaScript spare execs node's
    ``spare.js`` right away, which waits for the request itself and reports its
    exit code the same way; shell replaces this interpreter once the request
    came (the result pipe is closed first) and is seen to end when it exits.
    """
    status = 1
    try:
        setup.apply()
        if language == "javascript":  # node started now, waiting for the request (spare.js)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe("node", ["node", os.path.join(os.path.dirname(__file__), "spare.js")], setup.env)
        os.set_inheritable(SESSION_OUT_FD, False)  # not for a shell's program
        _prefault(setup.env)
        with os.fdopen(SESSION_IN_FD, "rb", buffering=0) as control:
            line = _LineReader(control).readline()
        if not line:  # the agent went away without using us
            status = 0
        else:
            request = wire.loads(line.decode())
            _reseed_interpreter()
            write_run_files(request["home"], request["files"])
            if request["language"] == "python":
                run_pid = os.getpid()
                # the run's home was empty when the prefault looked for the user site: only its files can add it
                user_site = any(os.path.normpath(path).split(os.sep)[0] == ".local" for path, _, _ in request["files"])
                status = _run_as_main(request["code"], request["env"], request["cwd"], user_site)
                if os.getpid() == run_pid:  # not a child the code forked, which returns here too
                    os.write(SESSION_OUT_FD, b"%d\n" % status)
            else:
                os.chdir(request["cwd"])
                argv = program_argv(request["language"], request["code"], "isolated", "/tmp/.corral")
                for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)
                os.execvpe(argv[0], argv, request["env"])
    except BaseException as exc:  # a forked child must never return into the agent's loop
        try:
            os.write(2, f"corral: cannot start the run: {exc}\n".encode(errors="replace"))
        except OSError:
            pass
        status = 127
    finally:
        os._exit(status)


def write_run_files(home, files):
    """Write the run's files ([relative path, base64 data, mode] each, checked by the agent) into ``home``."""
    import binascii

    for path, data_b64, mode in files:
        target = os.path.join(home, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o777)
        try:
            view = memoryview(binascii.a2b_base64(data_b64))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _reseed_interpreter():
    """Give this run random state of its own: what the agent seeded at import, every fork would share.

    ``random``'s global generator, and ``tempfile``'s name generator (which only
    reseeds when the pid changes, and every isolated run has the same pid, 2).
    """
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None


#: Compiled by every spare before its request: the compiler's and parser's paths a typical program takes.
_WARM_UP_PROGRAM = """
import sys
def f(values, *, scale=2):
    return [scale * v for v in values if v % 2] or {"k": (1, 2.5, None)}
class C:
    pass
try:
    print(f"{f(range(3))!r}", sys.argv, end="\\n")
except (ValueError, KeyError) as exc:
    raise SystemExit(1) from exc
"""


def _prefault(env):
    """Take the copy-on-write faults now, while no run waits.

    A forked interpreter copies every page whose objects it touches (reference
    counts are writes). A full collection touches every tracked object, a first
    compile of a small but varied program warms the compiler, and the run's start
    is done ahead where it can be: the sandbox's environment ``env`` (a run's own
    is that plus its variables, so only those are left to set) and the user-site
    check. The user's code later finds their pages private already (under TCG each
    such fault costs about as much as a system call on hardware).
    """
    import gc

    gc.collect()
    compile(_WARM_UP_PROGRAM, "<string>", "exec")
    _replace_environment(env)
    _add_user_site()


def _run_as_main(code, env, cwd, user_site=True):
    """Run ``code`` as the ``__main__`` of this process, the way ``python3 -c`` does.

    ``user_site`` False: the user site was looked for already (by the prefault) and cannot have appeared since.
    """
    _replace_environment(env)
    if cwd is not None and _enter_directory(cwd):
        return 1
    sys.argv = ["-c"]
    sys.path.insert(0, "")
    if user_site:
        _add_user_site()
    status = _run_code(code, _fresh_main_namespace())
    return _finish_interpreter(status)


def serve_python_session(setup):
    """Keep one interpreter state and run each code block sent on the control pipe."""
    status = 1
    try:
        setup.apply()
        _replace_environment(setup.env)
        sys.argv = [""]
        sys.path.insert(0, "")
        namespace = _fresh_main_namespace()
        from corral.agent.display import Display  # sessions only: ast and importlib are not on the one-shot path

        display = Display(SESSION_OUT_FD)
        display.install()
        control = os.fdopen(SESSION_IN_FD, "rb", buffering=0)
        reader = _LineReader(control)
        while True:
            line = reader.readline()
            if not line:
                status = 0
                break
            request = wire.loads(line.decode())
            os.environ.update(request["env"])
            _add_user_site()
            run_status = _enter_directory(request["cwd"])
            display.count = 0
            run_status = run_status or _run_session_block(request["code"], namespace, display)
            _flush_stdio()
            # the leading newline ends whatever the block's code left unterminated on this pipe
            reply = b"\n" + wire.dumps({"exit_code": run_status}).encode() + b"\n"
            os.write(SESSION_OUT_FD, reply)
    finally:
        os._exit(status)


class _LineReader:
    """Unbuffered line reader, so no input is held in a Python buffer across runs."""

    def __init__(self, raw):
        self._raw = raw
        self._pending = b""

    def readline(self):
        while b"\n" not in self._pending:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                return b""
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line


def _add_user_site():
    """Make packages installed with ``pip install --user`` importable.

    The agent runs with ``-I`` (no user site); the children it runs code in get
    the sandbox user's site-packages back, as ``python3`` in a shell has it.
    """
    path = os.path.expanduser("~/.local/lib/python%d.%d/site-packages" % sys.version_info[:2])
    if path not in sys.path and os.path.isdir(path):
        import site

        site.addsitedir(path)
        importlib = sys.modules.get("importlib")
        if importlib is not None:
            importlib.invalidate_caches()


def _enter_directory(path):
    """chdir for a session block; print the error and return 1 if impossible."""
    try:
        os.chdir(path)
        return 0
    except OSError as exc:
        sys.stderr.write(f"corral: cannot change directory to {path}: {exc.strerror}\n")
        return 1


def _replace_environment(env):
    """Make ``os.environ`` (and the C environment) exactly ``env``, changing only what differs."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _fresh_main_namespace():
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    return module.__dict__


def _run_code(code, namespace):
    """Compile and run one block; print errors as the interpreter would; return an exit status."""
    try:
        compiled = compile(code, "<string>", "exec")
        exec(compiled, namespace)
        return 0
    except SystemExit as exc:
        return _system_exit_status(exc)
    except BaseException as exc:  # the user's code failing is data, not an agent error
        _print_exception(exc)
        return 1


def _run_session_block(code, namespace, display):
    """Run one session block with rich results (see display.py); errors also go out as data."""
    try:
        display.run_cell(code, namespace)
        return 0
    except SystemExit as exc:
        return _system_exit_status(exc)
    except BaseException as exc:  # the user's code failing is data, not an agent error
        _print_exception(exc)
        display.error(exc, _user_frames(exc.__traceback__))
        return 1


def _user_frames(tb):
    """The traceback without corral's own frames at its start."""
    own = (__file__, os.path.join(os.path.dirname(__file__), "display.py"))
    while tb is not None and tb.tb_frame.f_code.co_filename in own:
        tb = tb.tb_next
    return tb


def _system_exit_status(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


def _print_exception(exc):
    import traceback

    tb = _user_frames(exc.__traceback__)  # the traceback starts at the user's code
    try:
        traceback.print_exception(type(exc), exc, tb)
    except Exception:
        pass


def _flush_stdio():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _finish_interpreter(status):
    """Do what interpreter shutdown does: join threads, run atexit, flush."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException as exc:
            _print_exception(exc)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except Exception:
        status = status or 120
    _flush_stdio()
    return status
