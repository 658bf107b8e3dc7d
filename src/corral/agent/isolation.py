"""Per-run isolation: each isolated run gets namespaces of its own, made fresh by a fork of the agent.

The agent is a pre-started interpreter that never runs user code (the zygote).
On the process level (the zygote made one user namespace of its own, once) the
zygote clones each run's *init* straight into a new mount, pid and IPC
namespace (and network: see :func:`clone_run_init`): the first process of the
new pid namespace, which mounts fresh tmpfs file systems on the home
directory, /tmp and /dev/shm (fresh mounts, not wipes: nothing of an earlier
run, not even an extended attribute or a timestamp of a mount's root,
survives), forks the run's own process (PID 2), reaps the run's orphans, and
sends the run's wait status to the zygote on a pipe when that process ends
(an init cannot end by a signal it sends itself). A microVM guest's zygote is
root, so there a *relay* joins the user cgroup, becomes the user, makes the
namespaces (a user namespace too) and the mounts, and forks twice: an init
that only holds the namespace, and the run's process; the relay exits the way
the run's process did. Either way the run's process mounts a /proc that shows
only its own namespace, forbids further user namespaces, drops every
capability, and only then confines itself the way every user process is
confined (Landlock, the user seccomp filter). User code is never PID 1, so it
keeps the signal semantics it has anywhere else (an init ignores the signals
it sends itself). When the run's process ends, its init ends, and the kernel
kills everything else in the pid namespace, threads of exited leaders
included: nothing of the run can outlive it. To end a run early the zygote
kills its init (its own child on the process level; through a pidfd the relay
sends it in the guest).

Everything here runs in a forked child; nothing returns into the agent's loop.
"""
from __future__ import annotations

import ctypes
import fcntl  # here, not in each run's process (which would load the extension module anew every time)
import os
import select
try:  # the C module: ``signal`` wraps it in enums, which cost ~1.5 ms to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

from corral.agent.dumpable import set_dumpable
from corral.agent.libc import libc, libc_keeping_lock

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
RUN_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SYS_CLONE = 56  # x86_64; arm64: 220 (see _clone_number)
_SYS_CAPSET = 126  # x86_64 and (as 91) arm64 differ: see _capset_number
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"


class RunMounts:
    """The fresh file systems of each isolated run: (path, mode) of the sandbox's writable places.

    Each run's tmpfs at ``path`` gets the size of the sandbox's own file system there.
    """

    def __init__(self, places):
        self.places = [(path, int(mode)) for path, mode in places]

    def sized(self):
        """(path, size in bytes, mode) for each place, sized like the sandbox's mount there now."""
        sized = []
        for path, mode in self.places:
            stats = os.statvfs(path)
            sized.append((path, stats.f_blocks * stats.f_frsize, mode))
        return sized


class IsolationError(OSError):
    """The run's namespaces could not be made (the run must not start)."""


def enter_zygote_user_namespace():
    """In the zygote (never root, never a run): a user namespace of its own that its relays share.

    Making a user namespace costs more than all of a run's other namespaces
    together, so where the zygote is not root (the process sandbox) it makes one
    once: its relays then hold every capability in it, which is what they need
    to make each run's other namespaces and mounts, and only that (its one uid
    and gid are mapped to themselves). No process in it may make a user namespace
    (the limit is 0), and each run's process drops all those capabilities before
    it runs user code (:func:`drop_capabilities`), as under a user namespace of
    its own. A run has no keyring to share with the next one either (seccomp
    denies the keyring calls).
    """
    _unshare_user(0)
    _write("/proc/sys/user/max_user_namespaces", "0")


def enter_run_namespaces(mounts, own_network):
    """In the relay (the microVM guest's, already the user): new user, mount, pid and IPC namespaces (and
    network: ``own_network``), fresh tmpfs mounts.

    Keeps this process's uid and gid (mapped to themselves) so files belong to
    the sandbox user as before. The next fork becomes the run's init (see
    :func:`hold_namespace`), the one after it the run's process. A network
    namespace of the run's own (only a loopback) keeps runs alive at the same
    time from reaching each other's loopback ports and abstract Unix sockets;
    a sandbox with network access shares its namespace with its runs instead.
    """
    places = mounts.sized()
    flags = RUN_NAMESPACES | (CLONE_NEWNET if own_network else 0)
    _unshare_user(flags)
    mount_run_filesystems(places)


def mount_run_filesystems(places):
    """In a run's fresh mount namespace: make it private, then a fresh tmpfs at each of ``places``
    ((path, size, mode), see :meth:`RunMounts.sized`)."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)
    for path, size, mode in places:
        _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size},mode={mode:o}")


def clone_run_init(own_network):
    """In the zygote: fork the run's init straight into new mount, pid and IPC namespaces (and network:
    ``own_network``), as ``os.fork`` does otherwise; returns 0 in the init, its pid in the zygote.

    One ``clone`` (no relay that unshares first and forks the init): the new
    pid namespace's first process is the init itself. The init then forks the
    run's process with ``os.fork``, which runs the interpreter's after-fork work
    (reseeds, lock resets) for the process that runs user code; the init runs
    only the code of :func:`serve_run_init`. The call keeps the interpreter lock
    (:func:`~corral.agent.libc.libc_keeping_lock`), so the child resumes exactly
    where the zygote was, as after a fork of a single-threaded process.
    """
    flags = RUN_NAMESPACES | (CLONE_NEWNET if own_network else 0) | signal.SIGCHLD
    pid = libc_keeping_lock().syscall(_clone_number(), ctypes.c_ulong(flags), None, None, None, None)
    if pid < 0:
        number = ctypes.get_errno()
        raise IsolationError(number, f"clone: {os.strerror(number)}")
    return pid


def serve_run_init(places, run, status_fd):
    """In the run's init (PID 1 of its pid namespace, forked by :func:`clone_run_init`): mount the run's
    file systems, fork its process (``run()``, which never returns), reap until that process ends, send its
    wait status on ``status_fd`` and exit (never returns): the kernel then kills whatever is left of the run.

    Dies with the zygote (checked against a zygote that died first). Orphans of
    the run re-parented here are reaped as they end. An init cannot end by a
    signal it sends itself, so the run's wait status travels on ``status_fd``
    (see zygote.py); every signal from inside the namespace is dropped by the
    kernel, as for any init without handlers (:func:`drop_signal_handlers`).
    """
    libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    poll = select.poll()
    poll.register(status_fd, 0)
    if poll.poll(0):  # the zygote (the pipe's only reader) died before the death signal was armed
        os._exit(1)
    drop_signal_handlers()
    mount_run_filesystems(places)
    pid = os.fork()
    if pid == 0:
        os.close(status_fd)
        run()
        os._exit(127)
    os.closerange(0, status_fd)
    os.closerange(status_fd + 1, 1 << 20)
    status = None
    while status is None:
        try:
            ended, ended_status = os.wait()
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if ended == pid:
            status = ended_status
    if status is not None:
        os.write(status_fd, b"%d\n" % status)
    os._exit(0)


def _unshare_user(flags):
    """unshare a new user namespace (and ``flags``), keeping this process's uid and gid mapped to themselves."""
    uid, gid = os.getuid(), os.getgid()
    _check(libc().unshare(CLONE_NEWUSER | flags), "unshare")
    set_dumpable(True)  # a non-dumpable process does not own its /proc/self files
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    set_dumpable(False)


def drop_signal_handlers():
    """In a run's init: every signal a Python handler catches (the zygote's SIGCHLD, the interpreter's SIGINT)
    gets its default action back, which for an init is that the kernel drops it when it comes from inside
    its pid namespace: user code cannot make its init raise (and so end) or run anything."""
    for number in range(1, signal.NSIG):
        try:
            handler = signal.getsignal(number)
        except (OSError, ValueError):
            continue
        if callable(handler):
            signal.signal(number, signal.SIG_DFL)


def hold_namespace():
    """In the run's init forked by a relay (the guest): hold the namespace, run nothing (never returns).

    Dies with the relay. SIGCHLD is ignored, so the kernel reaps the orphans of
    the run that are re-parented here; every other signal from inside the
    namespace is dropped by the kernel, as for any init without handlers
    (:func:`drop_signal_handlers`).
    """
    libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.closerange(0, 1 << 20)
    drop_signal_handlers()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        signal.pause()


def prepare_run(own_network):
    """In the run's process (PID 2 of its pid namespace): its own /proc, then no namespace powers left.

    Dies with its parent (the init; the relay in the guest, so a killed relay
    ends the run), mounts a /proc that shows only this pid namespace, brings
    the loopback of its own network namespace up, and sets the user-namespace
    limit of its own namespace to zero before it drops every capability.
    """
    libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
    if own_network:
        _loopback_up()
    _write("/proc/sys/user/max_user_namespaces", "0")


def _loopback_up():
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def drop_capabilities():
    """Drop every capability (bounding, ambient, effective, permitted, inheritable) of this process."""
    handle = libc()
    for cap in range(last_capability() + 1):
        handle.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    handle.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(handle.syscall(_capset_number(), header, data), "capset")


_last_cap = None


def last_capability():
    """The highest capability number this kernel knows (read once: forks inherit it)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open(_LAST_CAP_FILE) as source:
                _last_cap = int(source.read())
        except OSError:
            _last_cap = 63
    return _last_cap


def relay_exit(run_pid, init_pid):
    """In the relay (the guest): wait for the run's process, end its pid namespace, then end the way it ended
    (never returns)."""
    os.closerange(0, 1 << 20)
    status = _wait(run_pid)
    os.kill(init_pid, signal.SIGKILL)  # the kernel then kills whatever else of the run is left
    _wait(init_pid)
    if status is None:
        os._exit(1)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:  # SIGKILL has no handler to reset (and kills regardless)
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _wait(pid):
    """The wait status of child ``pid``, or None if it is not a child (any more)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return None


def _clone_number():
    machine = os.uname().machine
    return 220 if machine in ("aarch64", "arm64") else _SYS_CLONE


def _capset_number():
    machine = os.uname().machine
    return 91 if machine in ("aarch64", "arm64") else _SYS_CAPSET


def _mount(source, target, fstype, flags, data):
    encode = (lambda text: None if text is None else text.encode())
    _check(libc().mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def _check(result, what):
    if result != 0:
        number = ctypes.get_errno()
        raise IsolationError(number, f"{what}: {os.strerror(number)}")


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
