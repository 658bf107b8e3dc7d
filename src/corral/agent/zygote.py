"""The zygote: a pre-started interpreter that never handled a request, and forks each isolated run.

The agent forks the zygote at start, before it confines itself with Landlock
(a Landlock-restricted process may not mount, and each isolated run mounts
fresh file systems) and before it reads any request: so a run forked from the
zygote carries no memory of any other run (the agent's heap holds earlier
runs' code, files and output). The zygote only ever receives, over a Unix
socket, the five pipe ends of the next run (SCM_RIGHTS) and the sandbox's
settings for it; it forks the run's init straight into the run's namespaces
(a relay that makes them in the microVM guest: see isolation.py) and answers
with its pid. It waits for those children itself and reports each run's exit
status to the agent on the same socket.

Isolated runs cannot see the zygote (their own pid namespace) and the rest of
the sandbox's code cannot signal it (it is outside the agent's Landlock domain,
whose signal scope confines them). If it dies anyway, isolated runs fail with
an error and pings report the sandbox broken, so a pool replaces the sandbox.
"""

from __future__ import annotations

import binascii
import gc
import os
import select
import socket
import time
try:  # the C module: ``signal`` wraps it in enums, which cost ~1.5 ms to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

from corral.agent import child, isolation, tree
from corral.agent import lockdown as lockdown_module
from corral.agent.lockdown import Lockdown
from corral.protocol import wire

_MESSAGE_BYTES = 1 << 20
#: How long the agent waits for the zygote to take a request or answer one.
REPLY_DEADLINE_S = 10.0
_RUN_FDS = 5
#: How long the zygote waits for a killed run's init (or relay) to end before it kills its tree itself.
_RELAY_EXIT_S = 2.0
#: A start time no process has: tree.kill_tree takes no orphans of the zygote into the run.
_NEVER = 1 << 62


class ZygoteGone(Exception):
    """The zygote died: this sandbox can no longer start isolated runs."""


class Zygote:
    """The agent's end: start the zygote, ask it for runs, route its exit reports."""

    def __init__(self, agent, lockdown, run_mounts, confinement, protected):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            keep = theirs.fileno()
            os.closerange(3, keep)  # the protocol pipes, the agent's epoll: none of the zygote's business
            os.closerange(keep + 1, 1 << 20)
            status = 1
            try:
                status = _serve(theirs, lockdown, run_mounts, confinement, protected)
            finally:
                os._exit(status)
        theirs.close()
        self.agent = agent
        self.sock = ours
        self.sock.setblocking(True)
        self.alive = True
        self._pending_exits = []
        agent.watch(self.sock.fileno(), self.on_readable)
        agent.adopt(self.pid, self)

    def spawn(self, fds, language, home, env, rlimits, seccomp_program, own_network):
        """Fork a run with ``fds`` = (stdin, stdout, stderr, control, result); return its pid (its init's, or
        its relay's in the guest), which its exit report carries.

        ``seccomp_program`` is the user filter now (a VM gets it in ``configure``, after the zygote started);
        ``own_network``: the run gets a network namespace of its own (see isolation.enter_run_namespaces).
        """
        if not self.alive:
            raise ZygoteGone("the zygote is gone")
        if not seccomp_program:
            raise ZygoteGone("no user seccomp filter: an isolated run is never started without one")
        message = wire.dumps({"op": "spawn", "language": language, "cwd": home, "env": env, "rlimits": rlimits,
                              "seccomp_b64": binascii.b2a_base64(seccomp_program, newline=False).decode(),
                              "own_network": bool(own_network)}).encode()
        # a zygote that stopped answering (SIGSTOPped where Landlock cannot scope signals) must not hang the
        # agent: the request and its reply have a deadline, after which the zygote counts as gone (only here:
        # on a socket with a timeout, even a MSG_DONTWAIT receive first waits for data)
        self.sock.settimeout(REPLY_DEADLINE_S)
        try:
            socket.send_fds(self.sock, [message], list(fds))
            while True:
                reply = wire.loads(self.sock.recv(_MESSAGE_BYTES).decode() or "null")
                if reply is None:
                    raise ZygoteGone("the zygote closed its socket")
                if "exit" in reply:  # a report that crossed our request: handle it after
                    self._pending_exits.append(reply)
                    continue
                break
        except TimeoutError:
            self.abandon()
            raise ZygoteGone(f"the zygote did not answer in {REPLY_DEADLINE_S:g} s") from None
        except OSError as exc:
            raise ZygoteGone(f"the zygote is unreachable: {exc}") from None
        finally:
            self.sock.setblocking(True)
        if self._pending_exits:
            self.agent.call_at(0, self._flush_exits)
        if "error" in reply:
            raise ZygoteGone(reply["error"])
        return reply["pid"]

    def abandon(self):
        """Give up on a zygote that stopped answering: kill it (its exit is reaped as any child's); no more runs."""
        self.alive = False
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass

    def kill(self, run_pid):
        """Kill the run of ``run_pid`` (as spawn returned it) and everything in it (the zygote does: the run is
        outside the agent's Landlock domain, whose signal scope stops the agent's own signals at its border)."""
        if self.alive:
            try:
                self.sock.send(wire.dumps({"op": "kill", "pid": run_pid}).encode(), socket.MSG_DONTWAIT)
            except BlockingIOError:  # the zygote stopped reading: never block the agent on it
                self.abandon()
            except OSError:
                pass

    def on_readable(self):
        """Exit reports from the zygote: hand each status to the owner of that run."""
        try:
            data = self.sock.recv(_MESSAGE_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.agent.unwatch(self.sock.fileno())
            self.alive = False
            return
        self._pending_exits.append(wire.loads(data.decode()))
        self._flush_exits()

    def _flush_exits(self):
        reports, self._pending_exits = self._pending_exits, []
        for report in reports:
            self.agent.child_exited(report["exit"], report["status"])

    def on_exit(self, status):
        """The zygote itself died."""
        self.alive = False
        self.agent.unwatch(self.sock.fileno())
        self.sock.close()


def _serve(sock, lockdown, run_mounts, confinement, protected):
    """The zygote's loop: fork a run per request, report their exits; returns at EOF."""
    if confinement is None:  # not root (the guest's zygote is: its relays become the user first)
        isolation.enter_zygote_user_namespace()
    lockdown_module.warm_up()
    gc.collect()
    gc.freeze()  # a run's collections then leave the zygote's objects (and their pages) alone
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    runs = {}  # pid the agent knows the run by -> its _InitRun or _RelayRun
    while True:
        try:
            readable, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            _report_exits(sock, runs)
        if sock in readable:
            try:
                message, fds, _, _ = socket.recv_fds(sock, _MESSAGE_BYTES, _RUN_FDS)
            except InterruptedError:
                continue
            if not message:
                return 0
            request = wire.loads(message.decode())
            if request.get("op") == "kill":
                for fd in fds:
                    os.close(fd)
                run = runs.get(request.get("pid"))
                if run is not None:
                    status = run.kill()
                    if status is not None:  # reaped here: report it as _report_exits would
                        status = run.exit_status(status)  # the run's, where it had ended already
                        runs.pop(run.pid).close()
                        sock.send(wire.dumps({"exit": run.pid, "status": status}).encode())
                continue
            try:
                if len(fds) != _RUN_FDS:
                    raise ValueError(f"expected {_RUN_FDS} fds, got {len(fds)}")
                program = binascii.a2b_base64(request["seccomp_b64"])
                if not program:
                    raise ValueError("no user seccomp filter: an isolated run is never started without one")
                run_lockdown = Lockdown(lockdown.landlock_paths, program)
                setup = child.ChildSetup(fds[0], fds[1], fds[2], request["cwd"], request["env"], request["rlimits"],
                                         control_fds=(fds[3], fds[4]), protected_parent=protected,
                                         confinement=confinement, lockdown=run_lockdown)
                fork = _fork_relay if confinement is not None else _fork_init
                run = fork(setup, request["language"], run_mounts, bool(request.get("own_network")),
                           (sock.fileno(), wake_r, wake_w))
                runs[run.pid] = run
                reply = {"pid": run.pid}
            except Exception as exc:  # never let one request end the zygote
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                for fd in fds:
                    os.close(fd)
            sock.send(wire.dumps(reply).encode())


class _InitRun:
    """A run whose init the zygote forked itself (the process sandbox: see isolation.clone_run_init).

    The agent knows the run by the init's pid: the zygote's own child, so no
    other process can have that pid until the zygote reaps it. The init sends
    the run's wait status on ``status_fd`` before it exits.
    """

    def __init__(self, pid, status_fd):
        self.pid = pid
        self.status_fd = status_fd

    def kill(self):
        """SIGKILL the init, which ends the run's pid namespace; its wait status once the kernel has killed and
        reaped everything in it (so the next spare never meets the pids limit), else None (reaped later)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return _await_exit(self.pid, lambda: tree.kill_tree(self.pid, os.getpid(), set(), _NEVER, lambda: None))

    def exit_status(self, status):
        """The run's wait status, from its init's report (or the init's own ``status`` if it sent none)."""
        try:
            report = os.read(self.status_fd, 64)
        except OSError:
            report = b""
        try:
            return int(report)
        except ValueError:
            return status

    def close(self):
        os.close(self.status_fd)


class _RelayRun:
    """A run whose relay forked its init (the microVM guest, whose zygote is root: each relay joins the user
    cgroup and becomes the user before it makes the run's namespaces, a user namespace among them).

    The agent knows the run by the relay's pid; the relay sends a pidfd of the
    run's init on ``init_socket`` and exits the way the run's process did.
    """

    def __init__(self, pid, init_socket):
        self.pid = pid
        self.init_socket = init_socket

    def kill(self):
        """End the run and everything in it; its relay's wait status if it was reaped here, else None.

        The usual way: SIGKILL the run's init (through the pidfd its relay sent, so
        never another process that got its pid), which ends the run's pid namespace;
        the relay, waiting for the run's process and then for the init, exits once the
        kernel has killed and reaped everything in it, so the run is wholly gone
        before the zygote forks the next one (which the pids limit could refuse
        otherwise). Where that fd did not come (the relay had not forked the init yet)
        or the relay does not end in time: SIGKILL the relay and every process below it.
        """
        kill_tree = (lambda: tree.kill_tree(self.pid, os.getpid(), set(), _NEVER, lambda: None))
        try:
            _, fds, _, _ = socket.recv_fds(self.init_socket, 1, 1, socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            fds = []
        if not fds:
            kill_tree()
            return None
        try:
            signal.pidfd_send_signal(fds[0], signal.SIGKILL)
        except OSError:
            pass  # it ended already (the relay is about to)
        finally:
            for fd in fds:
                os.close(fd)
        return _await_exit(self.pid, kill_tree)

    def exit_status(self, status):
        """The run's wait status: the relay's own (it ends the way the run's process did)."""
        return status

    def close(self):
        self.init_socket.close()


def _await_exit(pid, give_up):
    """Child ``pid``'s wait status once it ended (at most _RELAY_EXIT_S), else call ``give_up()``; None if not
    reaped here."""
    deadline = time.monotonic() + _RELAY_EXIT_S
    while time.monotonic() < deadline:
        try:
            ended, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if ended:
            return status
        time.sleep(0.0005)
    give_up()
    return None


def _send_pidfd(relay_socket, init_pid):
    """In the relay: send the zygote a pidfd of the run's init (without one, a kill walks the process tree)."""
    try:
        init_fd = os.pidfd_open(init_pid)
    except (AttributeError, OSError):  # a kernel older than 5.3
        init_fd = None
    try:
        if init_fd is not None:
            socket.send_fds(relay_socket, [b"i"], [init_fd])
    except OSError:
        pass
    finally:
        if init_fd is not None:
            os.close(init_fd)
        relay_socket.close()


def _report_exits(sock, runs):
    for pid, status in tree.exited_children():
        run = runs.pop(pid, None)
        if run is not None:
            status = run.exit_status(status)
            run.close()
        sock.send(wire.dumps({"exit": pid, "status": status}).encode())


def _fork_relay(setup, language, run_mounts, own_network, zygote_fds):
    """Fork the relay of an isolated run where the zygote is root (the microVM guest); the run's process
    (PID 2) serves it (child.serve_isolated_spare). Returns its _RelayRun.

    A root zygote cannot clone the run's init straight into its namespaces (see
    _fork_init): the run must join the user cgroup and become the user first,
    and then needs a user namespace of its own to make the others, so a relay
    does that, unshares, and forks the init and the run's process.
    """
    init_socket, relay_socket = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            for fd in (*zygote_fds, init_socket.fileno()):
                os.close(fd)
            setup.confinement.apply()  # join the user cgroup, become the user, then unshare (a user namespace too)
            setup.confinement = None
            isolation.enter_run_namespaces(run_mounts, own_network)
            init = os.fork()
            if init == 0:
                isolation.hold_namespace()
            _send_pidfd(relay_socket, init)
            run = os.fork()
            if run == 0:
                setup.isolated = True
                isolation.prepare_run(own_network)
                child.serve_isolated_spare(setup, language)
            isolation.relay_exit(run, init)
        except BaseException as exc:  # a forked child must never return into the zygote's loop
            _report_failure(setup, exc)
        os._exit(126)
    relay_socket.close()
    return _RelayRun(pid, init_socket)


def _report_failure(setup, exc):
    """In a run's forked child that could not make the run: tell the run's stderr why."""
    try:
        os.write(setup.stderr_fd, f"corral: cannot isolate the run: {exc}\n".encode(errors="replace"))
    except OSError:
        pass


def _fork_init(setup, language, run_mounts, own_network, zygote_fds):
    """Fork the init of an isolated run into its namespaces; the run's process (PID 2) serves it
    (child.serve_isolated_spare). Returns its _InitRun."""
    places = run_mounts.sized()
    status_r, status_w = os.pipe()
    try:
        pid = isolation.clone_run_init(own_network)
    except BaseException:
        os.close(status_r)
        os.close(status_w)
        raise
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            for fd in (*zygote_fds, status_r):
                os.close(fd)

            def run():
                setup.isolated = True
                isolation.prepare_run(own_network)
                child.serve_isolated_spare(setup, language)

            isolation.serve_run_init(places, run, status_w)
        except BaseException as exc:  # a forked child must never return into the zygote's loop
            _report_failure(setup, exc)
        os._exit(126)
    os.close(status_w)
    os.set_blocking(status_r, False)
    return _InitRun(pid, status_r)
