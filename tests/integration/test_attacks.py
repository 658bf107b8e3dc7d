"""Attacks on the process sandbox: every test here is an attempt to do harm that must fail.

Each test mounts a real attack that would succeed without the protection it
targets (host files are planted world-readable, the host victim process runs
as the same host uid as the sandbox, ...), and asserts on the evidence of
failure (the secret is absent from every output, the host file is unchanged,
the victim is alive), not merely on a non-zero exit code.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

import corral
from corral.host.sandbox_user import NOBODY

pytestmark = pytest.mark.sandbox

ISOLATION = "process"
MIB = 1024 * 1024


def run(code: str, language: str = "python", **options) -> corral.ExecutionResult:
    """A one-shot run in the process sandbox (the level these attacks target)."""
    result = corral.run(code, language, isolation=ISOLATION, **options)
    assert result.isolation == ISOLATION
    return result


def sandbox(language: str = "python", **options) -> corral.Sandbox:
    return corral.Sandbox(language, isolation=ISOLATION, **options)


def output(result: corral.ExecutionResult) -> str:
    return result.stdout + result.stderr


def assert_host_responsive() -> None:
    """A fresh sandbox starts, runs and answers quickly after an attack."""
    started = time.monotonic()
    result = run("print(6 * 7)", timeout=10)
    elapsed = time.monotonic() - started
    assert result.ok and result.stdout == "42\n", result
    assert elapsed < 5, f"a trivial run took {elapsed:.1f}s after the attack"


PYTHON_FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


def host_pids_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(name))
    return found


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every regular file below ``root`` (symlinks not followed)."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def secrets():
    """World-readable secret files planted on the host: {path: content}."""
    planted = {}
    for directory in ("/root", "/tmp", "/var/tmp"):
        path = Path(directory) / f"corral-secret-{uuid.uuid4().hex}"
        content = f"TOPSECRET-{uuid.uuid4().hex}"
        path.write_text(content)
        path.chmod(0o644)  # readable by the sandbox's host uid, were the file visible
        planted[str(path)] = content
    yield planted
    for path in planted:
        Path(path).unlink(missing_ok=True)


@pytest.fixture
def host_victim():
    """A host process running as the sandbox's own host uid (so only namespaces protect it)."""
    marker = f"corral-victim-{uuid.uuid4().hex}"
    process = subprocess.Popen(
        ["python3", "-c", "import time; time.sleep(30)", marker],
        user=NOBODY[0], group=NOBODY[1], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield process, marker
    finally:
        process.kill()
        process.wait(timeout=5)


class _Listener:
    """A TCP server on the host that records every connection it accepts."""

    def __init__(self, address: str, lifetime: float = 20.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address, self.port = self.sock.getsockname()
        self.accepted: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, peer = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted.append(peer)
            with conn:
                try:
                    conn.sendall(b"HOST-SERVICE-BANNER\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _host_ipv4() -> str | None:
    """This host's primary non-loopback IPv4 address, if it has one (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture
def listeners():
    servers = [_Listener("127.0.0.1")]
    external = _host_ipv4()
    if external:
        servers.append(_Listener(external))
    yield servers
    for server in servers:
        server.close()


# --- 1. reading host files ----------------------------------------------------------


def test_host_secret_files_are_unreadable(secrets):
    paths = list(secrets)
    code = f"""
import os
for index, path in enumerate({paths!r}):
    try:
        with open(path) as handle:
            print("READ", path, handle.read())
    except OSError as exc:
        print("DENIED", path, type(exc).__name__)
    for link in ("/home/user/link-%d" % index, "/tmp/link-%d" % index):
        os.symlink(path, link)
        try:
            with open(link) as handle:
                print("READ", link, handle.read())
        except OSError as exc:
            print("DENIED", link, type(exc).__name__)
"""
    with sandbox("python", timeout=10) as sb:
        result = sb.run(code)
        assert result.exit_code == 0, result
        for content in secrets.values():
            assert content not in output(result)
        assert "READ" not in result.stdout, result.stdout
        for index, path in enumerate(paths):
            for attempt in (path, f"/home/user/link-{index}", f"/tmp/link-{index}"):
                assert f"DENIED {attempt} FileNotFoundError" in result.stdout, result.stdout

        shell = sb.commands.run(" ; ".join(f"cat {path}" for path in paths) + " ; cat /home/user/link-* /tmp/link-*")
        assert shell.exit_code != 0
        assert shell.stderr.count("No such file or directory") == 3 * len(paths), shell
        for content in secrets.values():
            assert content not in output(shell)

        for index, (path, content) in enumerate(secrets.items()):
            traversal = "../" * 6 + path.lstrip("/")
            for attempt in (path, traversal, f"link-{index}", f"/tmp/link-{index}", f"../../tmp/link-{index}"):
                with pytest.raises(corral.FileOperationError) as caught:
                    sb.files.read(attempt)
                assert caught.value.code == "not_found", (attempt, caught.value)
                assert content not in str(caught.value)
        visible = {entry.name for entry in sb.files.list("/tmp")}
        assert not {name for name in visible if name.startswith("corral-secret-")}, visible


# --- 2. seeing host processes ---------------------------------------------------------


def test_host_processes_are_invisible(host_victim):
    victim, marker = host_victim
    me = os.getpid()
    code = """
import os
pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
print("PIDS", pids)
for pid in pids:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            print("CMD", pid, handle.read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
"""
    result = run(code, timeout=10)
    assert result.exit_code == 0, result
    pids = ast.literal_eval(result.stdout.splitlines()[0].removeprefix("PIDS "))
    assert len(pids) <= 4, pids
    assert marker not in result.stdout
    assert "pytest" not in result.stdout and "sleep(30)" not in result.stdout
    for host_pid in (me, victim.pid, os.getppid()):
        if host_pid > 10:  # small pids are the sandbox's own
            assert host_pid not in pids

    listing = run("ps -eo pid,args; ls /proc | grep -c '^[0-9]'", "shell", timeout=10)
    assert listing.exit_code == 0, listing
    assert marker not in listing.stdout and "pytest" not in listing.stdout
    lines = listing.stdout.strip().splitlines()
    assert len(lines) - 2 <= 4, listing.stdout  # header, the processes, the count
    assert int(lines[-1]) <= 5


# --- 3. network -----------------------------------------------------------------------


def test_no_network_to_host_or_outside(listeners):
    targets = [(server.address, server.port) for server in listeners] + [("1.1.1.1", 53), ("8.8.8.8", 443)]
    code = f"""
import socket
for target in {targets!r}:
    try:
        with socket.create_connection(tuple(target), timeout=2) as conn:
            print("CONNECTED", target, conn.recv(100))
    except OSError as exc:
        print("FAILED", target, type(exc).__name__, exc.errno)
try:
    print("RESOLVED", socket.gethostbyname("example.com"))
except OSError as exc:
    print("NO-DNS", type(exc).__name__)
print("IFACES", sorted(name for _, name in socket.if_nameindex()))
"""
    result = run(code, timeout=15)
    assert result.exit_code == 0, result
    assert "CONNECTED" not in result.stdout and "HOST-SERVICE-BANNER" not in result.stdout
    assert result.stdout.count("FAILED") == len(targets)
    assert "RESOLVED" not in result.stdout and "NO-DNS" in result.stdout
    assert "IFACES ['lo']" in result.stdout
    for server in listeners:
        assert server.accepted == [], f"the host server on {server.address} accepted {server.accepted}"

    shell = run(
        f"exec 3<>/dev/tcp/127.0.0.1/{listeners[0].port} && echo CONNECTED; cat /proc/net/dev", "shell", timeout=10
    )
    assert "CONNECTED" not in shell.stdout
    interfaces = [line.split(":")[0].strip() for line in shell.stdout.splitlines() if ":" in line]
    assert interfaces == ["lo"], shell.stdout
    assert listeners[0].accepted == []


def test_no_abstract_unix_socket_to_host():
    name = f"\0corral-attack-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen(1)
    server.settimeout(0.2)
    try:
        code = f"""
import socket
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    client.connect({name!r})
    print("CONNECTED")
except OSError as exc:
    print("FAILED", type(exc).__name__)
"""
        result = run(code, timeout=10)
        assert "CONNECTED" not in result.stdout and "FAILED" in result.stdout, result
        with pytest.raises((TimeoutError, socket.timeout)):
            server.accept()
    finally:
        server.close()


# --- 4. killing host processes --------------------------------------------------------


def test_cannot_kill_host_process(host_victim):
    victim, _marker = host_victim
    code = f"""
import os, signal
for attempt in ("pid", "group", "all"):
    try:
        if attempt == "pid":
            os.kill({victim.pid}, signal.SIGKILL)
        elif attempt == "group":
            os.killpg({victim.pid}, signal.SIGKILL)
        else:
            os.kill(-1, signal.SIGKILL)
        print("SENT", attempt)
    except OSError as exc:
        print("FAILED", attempt, type(exc).__name__)
"""
    result = run(code, timeout=10)
    assert "FAILED pid ProcessLookupError" in result.stdout, result
    shell = run(f"kill -9 {victim.pid}; kill -KILL -- -{victim.pid}", "shell", timeout=10)
    assert shell.exit_code != 0 and "No such process" in shell.stderr, shell
    time.sleep(0.2)
    assert victim.poll() is None, f"the host process died: {victim.returncode}"


# --- 5. mount, user namespaces, ptrace ------------------------------------------------


def test_mount_unshare_and_ptrace_are_denied():
    code = r"""
import ctypes, errno, os, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)

os.makedirs("/home/user/mnt", exist_ok=True)
rc = libc.mount(b"none", b"/home/user/mnt", b"tmpfs", 0, None)
print("MOUNT", rc, errno.errorcode.get(ctypes.get_errno()))
rc = libc.mount(b"/home/user", b"/usr", None, 4096 | 16384, None)  # MS_BIND|MS_REC over a read-only dir
print("BIND", rc, errno.errorcode.get(ctypes.get_errno()))
rc = libc.umount2(b"/usr", 2)
print("UMOUNT", rc, errno.errorcode.get(ctypes.get_errno()))
with open("/proc/self/mounts") as handle:
    mounts = handle.read()
print("MOUNTED" if " /home/user/mnt " in mounts else "NOT-MOUNTED")

for name, flag in (("NEWUSER", 0x10000000), ("NEWNS", 0x00020000), ("NEWNET", 0x40000000)):
    rc = libc.unshare(flag)
    print("UNSHARE", name, rc, errno.errorcode.get(ctypes.get_errno()))
print("UID", os.getuid(), open("/proc/self/uid_map").read().split())

victim = subprocess.Popen(["sleep", "30"])
time.sleep(0.1)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
for name, request in (("ATTACH", 16), ("SEIZE", 0x4206)):
    rc = libc.ptrace(request, victim.pid, None, None)
    print("PTRACE", name, rc, errno.errorcode.get(ctypes.get_errno()))
for line in open(f"/proc/{victim.pid}/status"):
    if line.startswith("TracerPid"):
        print("TRACER", line.split()[1])
victim.kill()
victim.wait()
"""
    result = run(code, timeout=10)
    assert result.exit_code == 0, result
    out = result.stdout
    assert "MOUNT -1 EPERM" in out and "BIND -1 EPERM" in out and "UMOUNT -1 EPERM" in out, out
    assert "NOT-MOUNTED" in out
    for name in ("NEWUSER", "NEWNS", "NEWNET"):
        assert f"UNSHARE {name} -1 EPERM" in out, out
    assert "UID 1000 " in out
    assert "PTRACE ATTACH -1 EPERM" in out and "PTRACE SEIZE -1 EPERM" in out, out
    assert "TRACER 0" in out

    shell_cmd = (
        "mkdir -p ~/m; mount -t tmpfs none ~/m; echo mount=$?; "
        "unshare -U -r id -u; echo unshare=$?; "
        "sleep 30 & victim=$!; "
        + ("strace -p $victim -e trace=none -o /dev/null & tracer=$!; sleep 0.5; "
           "grep TracerPid /proc/$victim/status; kill $tracer 2>/dev/null; "
           if shutil.which("strace") else "")
        + "kill $victim; grep -c ' /home/user/m ' /proc/self/mounts"
    )
    shell = run(shell_cmd, "shell", timeout=10)
    assert "mount=0" not in shell.stdout and "unshare=0" not in shell.stdout, shell
    assert "\n0\n" not in shell.stdout.split("unshare=")[0]  # unshare -r never printed uid 0
    assert shell.stdout.strip().endswith("0"), shell  # the tmpfs is not in the mount table
    if shutil.which("strace"):
        assert "TracerPid:\t0" in shell.stdout, shell
        assert "Operation not permitted" in shell.stderr, shell


# --- 6. writing outside through the file API ------------------------------------------


def test_file_api_cannot_write_host_paths():
    token = uuid.uuid4().hex
    escape_name = f"corral-escape-{token}"
    runtime_root = Path("/var/lib/corral/runtime")  # the agent bundle (sandboxes/ comes and goes)
    runtime_before = tree_digest(runtime_root) if runtime_root.is_dir() else {}
    passwd_before = Path("/etc/passwd").read_bytes()
    python_before = Path("/usr/bin/python3").resolve().stat()
    usr_bin_before = set(os.listdir("/usr/bin"))
    etc_x_existed = os.path.lexists("/etc/passwd-x")

    with sandbox("python", timeout=10) as sb:
        # traversal to /tmp lands in the sandbox's own /tmp: allowed, but never on the host
        sb.files.write(f"../../../tmp/{escape_name}", b"escaped")
        assert sb.files.read(f"/tmp/{escape_name}") == b"escaped"

        for path in ("/etc/passwd-x", "/etc/passwd", f"/usr/bin/{escape_name}", "/usr/bin/python3",
                     "/opt/corral/agent.py", f"../../../usr/bin/{escape_name}", f"/var/tmp/{escape_name}",
                     f"/{escape_name}"):
            with pytest.raises(corral.FileOperationError) as caught:
                sb.files.write(path, b"pwned")
            assert caught.value.code in ("read_only", "permission", "not_found"), (path, caught.value)

        assert sb.commands.run("ln -s /usr/bin ~/binlink && ln -s /opt/corral ~/agentlink").exit_code == 0
        for path in (f"binlink/{escape_name}", "binlink/python3", "agentlink/agent.py"):
            with pytest.raises(corral.FileOperationError) as caught:
                sb.files.write(path, b"pwned")
            assert caught.value.code in ("read_only", "permission"), (path, caught.value)
        with pytest.raises(corral.FileOperationError):
            sb.files.remove("binlink/python3")
        with pytest.raises(corral.FileOperationError):
            sb.files.remove("/opt/corral/agent.py")

        # the same from code, which has no file API in between
        shell = sb.commands.run(
            f"echo pwned > ~/binlink/{escape_name}; echo pwned >> /opt/corral/agent.py; "
            "echo pwned >> /etc/passwd; echo pwned > /etc/passwd-x; touch /usr/bin/python3; "
            f"rm -f ~/binlink/python3; echo pwned > /{escape_name}"
        )
        assert shell.stderr.count("Read-only file system") + shell.stderr.count("Permission denied") >= 7, shell
        assert sb.commands.run(f"head -c 5 /usr/bin/{escape_name} 2>&1").stdout.find("pwned") < 0

    assert not os.path.lexists(f"/tmp/{escape_name}")
    assert not os.path.lexists(f"/var/tmp/{escape_name}")
    assert not os.path.lexists(f"/{escape_name}")
    assert not os.path.lexists(f"/usr/bin/{escape_name}")
    assert set(os.listdir("/usr/bin")) == usr_bin_before
    assert Path("/etc/passwd").read_bytes() == passwd_before
    assert os.path.lexists("/etc/passwd-x") == etc_x_existed
    after = Path("/usr/bin/python3").resolve().stat()
    assert (after.st_size, after.st_mtime_ns) == (python_before.st_size, python_before.st_mtime_ns)
    if runtime_root.is_dir():
        runtime_after = tree_digest(runtime_root)
        changed = {path for path in runtime_before if runtime_after.get(path) != runtime_before[path]}
        assert not changed, f"the agent bundle on the host changed: {changed}"


# --- 7. fork bombs --------------------------------------------------------------------


@pytest.mark.slow
def test_fork_bombs_are_contained():
    count = """
import os, time
children = 0
try:
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    print("FORKED", children)
except OSError as exc:
    print("STOPPED", children, exc.errno)
"""
    counted = run(count, timeout=10, pids=64)
    assert counted.stdout.startswith("STOPPED"), counted
    _, children, error = counted.stdout.split()
    assert int(children) < 64 and int(error) == errno.EAGAIN  # the pids limit, not the loop, stopped it

    started = time.monotonic()
    result = run(PYTHON_FORK_BOMB, timeout=2, pids=64)
    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code != 0, result
    assert_host_responsive()

    with sandbox("shell", timeout=5, pids=64) as sb:
        started = time.monotonic()
        shell = sb.commands.run(":(){ :|:& };:", timeout=2)
        assert time.monotonic() - started < 10
        assert shell.timed_out or "fork: retry: Resource temporarily unavailable" in shell.stderr, shell
    assert_host_responsive()

    # a bomb left running in the background of a command that returned: closing the sandbox must end it
    marker = f"corral-bomb-{uuid.uuid4().hex}"
    with sandbox("python", timeout=5, pids=64) as sb:
        background = sb.commands.run(f"python3 -c '{PYTHON_FORK_BOMB}' {marker} >/dev/null 2>&1 &", timeout=2)
        assert background.exit_code == 0, background
        time.sleep(0.3)
        assert host_pids_with(marker), "the background bomb did not start (the test is broken)"
    assert wait_until(lambda: not host_pids_with(marker), 10), f"bomb outlived its sandbox: {host_pids_with(marker)}"
    assert_host_responsive()


# --- 8. memory ------------------------------------------------------------------------


def test_memory_bomb_is_stopped():
    code = """
chunks = []
for _ in range(100):
    chunks.append(b"x" * (10 * 1024 * 1024))  # bytes are written, so pages are really used
print("ALLOCATED", sum(map(len, chunks)) // (1024 * 1024), "MiB")
"""
    result = run(code, timeout=20, memory_mb=128)
    assert "ALLOCATED" not in result.stdout, result
    assert result.oom_killed or (result.exit_code != 0 and "MemoryError" in result.stderr), result
    if result.memory_peak_mb is not None:
        assert result.memory_peak_mb <= 128 * 1.1, result.memory_peak_mb
    assert_host_responsive()


# --- 9. disk --------------------------------------------------------------------------


def test_disk_fill_is_stopped():
    host_free_before = shutil.disk_usage("/").free
    code = """
import errno
for directory in ("/home/user", "/tmp"):
    written = 0
    block = b"x" * (1024 * 1024)
    try:
        with open(directory + "/fill", "wb") as handle:
            for _ in range(100):
                handle.write(block)
                handle.flush()
                written += len(block)
        print("WROTE-ALL", directory)
    except OSError as exc:
        print("FULL", directory, written // (1024 * 1024), errno.errorcode.get(exc.errno), exc.strerror)
"""
    with sandbox("python", timeout=20, disk_mb=16, memory_mb=256) as sb:
        result = sb.run(code)
        assert "WROTE-ALL" not in result.stdout, result
        lines = [line.split() for line in result.stdout.splitlines() if line.startswith("FULL")]
        assert [line[1] for line in lines] == ["/home/user", "/tmp"], result
        for line in lines:
            assert int(line[2]) <= 16 and line[3] == "ENOSPC", line
        assert "No space left on device" in result.stdout

        sb.commands.run("rm -f /home/user/fill /tmp/fill")
        sb.files.write("a.bin", b"\0" * (12 * MIB))
        with pytest.raises(corral.FileOperationError) as caught:
            sb.files.write("b.bin", b"\0" * (12 * MIB))
        assert caught.value.code == "no_space", caught.value
        shell = sb.commands.run("head -c 100M /dev/zero > /tmp/fill; echo rc=$?; du -m /tmp/fill")
        assert "No space left on device" in shell.stderr and "rc=0" not in shell.stdout, shell
    assert host_free_before - shutil.disk_usage("/").free < 64 * MIB


# --- 10. endless output ---------------------------------------------------------------


@pytest.mark.slow
def test_endless_output_is_capped():
    result = run("while True: print('x' * 1000)", timeout=2)
    assert result.timed_out and result.stdout_truncated, result.model_copy(update={"stdout": "..."})
    assert 0 < len(result.stdout.encode()) <= 1048576
    assert set(result.stdout) <= {"x", "\n"}

    result = run("import sys\nwhile True: sys.stderr.write('y' * 1000 + '\\n')", timeout=2)
    assert result.timed_out and result.stderr_truncated, result.model_copy(update={"stderr": "..."})
    assert 0 < len(result.stderr.encode()) <= 100 * 1024
    assert len(result.stdout) == 0


# --- 11. outliving the timeout --------------------------------------------------------


@pytest.mark.slow
def test_grandchild_cannot_outlive_the_timeout():
    code = """
import os, subprocess, time
script = "sleep 2; echo x > /home/user/escaped-$0; exec sleep 61"
subprocess.Popen(["sh", "-c", script, "popen"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.execvp("sh", ["sh", "-c", script, "doublefork"])
    os._exit(0)
os.waitpid(pid, 0)
print("SPAWNED", flush=True)
while True:
    time.sleep(3600)
"""
    with sandbox("python", timeout=10) as sb:
        result = sb.run(code, timeout=1)
        assert result.timed_out, result
        assert "SPAWNED" in result.stdout
        time.sleep(3)
        names = {entry.name for entry in sb.files.list(".")}
        assert not {name for name in names if name.startswith("escaped")}, names
        procs = sb.commands.run("ps -eo pid,args || ls /proc")
        assert procs.exit_code == 0, procs
        assert "sleep" not in procs.stdout and " sh " not in procs.stdout, procs.stdout
        # the same from the shell: a nohup'd, disowned, setsid'd sleeper
        shell = sb.commands.run(
            "setsid nohup sh -c 'sleep 2; echo x > /home/user/escaped-shell; exec sleep 61' >/dev/null 2>&1 & "
            "disown; sleep 100", timeout=1)
        assert shell.timed_out, shell
        time.sleep(2.5)
        names = {entry.name for entry in sb.files.list(".")}
        assert "escaped-shell" not in names, names
        assert "sleep" not in sb.commands.run("ps -eo pid,args").stdout


# --- 12. environment ------------------------------------------------------------------


BAD_ENVS = [
    {"LD_PRELOAD": "/home/user/evil.so"},
    {"LD_LIBRARY_PATH": "/home/user"},
    {"PYTHONPATH": "/home/user"},
    {"PYTHONSTARTUP": "/home/user/evil.py"},
    {"NODE_OPTIONS": "--require /home/user/evil.js"},
    {"BASH_ENV": "/home/user/evil.sh"},
    {"BASH_FUNC_echo%%": "() { touch /home/user/ran; }"},
    {"BAD-NAME": "x"},
    {"OK": "line\nINJECTED=1"},
    {"OK": "nul\0byte"},
]


@pytest.mark.parametrize("env", BAD_ENVS, ids=lambda env: next(iter(env)) + "=" + repr(next(iter(env.values())))[:12])
def test_dangerous_environment_is_refused_before_running(env):
    with pytest.raises(corral.InvalidInputError):
        run("open('/home/user/ran', 'w')", env=env)
    with pytest.raises(corral.InvalidInputError):
        sandbox("python", env=env)
    with sandbox("python", timeout=5) as sb:
        with pytest.raises(corral.InvalidInputError):
            sb.run("open('/home/user/ran', 'w')", env=env)
        with pytest.raises(corral.InvalidInputError):
            sb.commands.run("touch /home/user/ran", env=env)
        assert "ran" not in {entry.name for entry in sb.files.list(".")}


# --- 13. privileges -------------------------------------------------------------------


def test_no_privileges_inside():
    code = """
import os
print("IDS", os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups()))
with open("/proc/self/status") as handle:
    for line in handle:
        if line.startswith(("Cap", "NoNewPrivs", "Seccomp:")):
            print(line.strip())
"""
    with sandbox("python", timeout=10) as sb:
        for result in (run(code, timeout=10), sb.run(code), sb.commands.run(f"python3 -c '{code}'")):
            assert result.exit_code == 0, result
            fields = dict(line.split(":\t") for line in result.stdout.splitlines() if ":\t" in line)
            assert result.stdout.startswith("IDS 1000 1000 1000 1000 "), result.stdout
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(fields[cap], 16) == 0, (cap, fields)
            assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2", fields
        shell = sb.commands.run("grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; id -u")
        assert shell.stdout.split() == ["CapEff:", "0000000000000000", "NoNewPrivs:", "1", "Seccomp:", "2", "1000"]
        # seen from the host, the sandbox's processes are the unprivileged host uid, without capabilities
        marker = f"corral-uid-{uuid.uuid4().hex}"
        assert sb.commands.run(f"(exec -a {marker} sleep 20) >/dev/null 2>&1 &").exit_code == 0
        assert wait_until(lambda: host_pids_with(marker), 5), "the marked sleeper did not start"
        for pid in host_pids_with(marker):
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            assert status["Uid"].split() == [str(NOBODY[0])] * 4, status["Uid"]
            assert status["Gid"].split() == [str(NOBODY[1])] * 4, status["Gid"]
            assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        # a setuid binary does not raise privileges under no_new_privs (and the sandbox has no root to become)
        for command in ("su -c 'id -u' root", "sudo -n id -u"):
            attempt = sb.commands.run(f"{command} </dev/null 2>&1; echo; id -u", timeout=5)
            assert "0" not in attempt.stdout.split(), (command, attempt)
            assert attempt.stdout.split()[-1] == "1000"
    assert wait_until(lambda: not host_pids_with(marker), 10), "a sandbox process outlived its sandbox"


# --- extra: the agent and its channel -------------------------------------------------


def test_cannot_forge_frames_on_the_host_channel():
    """User code reaches the agent's fds through /proc/1/fd: the host channel pipes must stay closed to it."""
    code = """
import os
try:
    fds = sorted(os.listdir("/proc/1/fd"), key=int)
except PermissionError:
    print("FD-LISTING DENIED")  # the agent is not dumpable: its fds are closed to user code
    fds = []
for n in fds:
    path = f"/proc/1/fd/{n}"
    try:
        target, owner = os.readlink(path), os.stat(path).st_uid
    except OSError:
        continue
    if not target.startswith("pipe:"):
        continue
    origin = "sandbox" if owner == 1000 else "host"
    if origin == "sandbox":
        continue  # the agent's pipes to its own children: user code already holds their other ends
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        print("DENIED", origin, n, type(exc).__name__)
        continue
    print("OPENED", origin, n)
    for request_id in range(1, 40):
        try:
            os.write(fd, b'{"type": "exec_done", "id": %d, "exit_code": 0, "signal": null}\\n' % request_id)
            os.write(fd, b'{"type": "output", "id": %d, "stream": "stdout", "data": "FORGED\\\\n"}\\n' % request_id)
        except OSError:
            break
    os.close(fd)
try:
    os.open("/proc/1/mem", os.O_RDWR)
    print("MEM-WRITABLE")
except OSError as exc:
    print("MEM-DENIED", type(exc).__name__)
print("END")
"""
    with sandbox("python", timeout=10) as sb:
        result = sb.run(code)
        assert "END" in result.stdout, result
        lines = result.stdout.splitlines()
        host_pipes = [line for line in lines if line.split()[1:2] == ["host"]]
        # the agent's fd table is closed to user code, or at least the request and event pipes are
        assert "FD-LISTING DENIED" in result.stdout or len(host_pipes) >= 2, result.stdout
        assert all(line.startswith("DENIED host") for line in host_pipes), result.stdout
        assert "MEM-WRITABLE" not in result.stdout
        # the host still gets genuine results
        for attempt in range(3):
            echoed = sb.run(f"print('genuine', {attempt})")
            assert (echoed.stdout, echoed.exit_code) == (f"genuine {attempt}\n", 0), echoed
            command = sb.commands.run(f"echo ok {attempt}; exit 3")
            assert (command.stdout, command.exit_code) == (f"ok {attempt}\n", 3), command
