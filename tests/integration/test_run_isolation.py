"""Per-run isolation: one run must not pass data or control to the next one on the same warm sandbox.

Every test here mounts an attack from one run (or a run alive at the same time)
against another on the *same* sandbox, and asserts on the evidence of failure.
The pools are made with ``recycle=True``: the parameter is ignored now (every pool
reuses its sandboxes, each run isolated), and it makes the code before per-run
isolation reuse its sandboxes too, so these attacks were also run against it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import corral
from corral.sandbox import AsyncSandbox

pytestmark = pytest.mark.sandbox


def warm_pool() -> corral.Pool:
    """A pool of one sandbox: every run goes to the same one."""
    return corral.Pool(size=1, recycle=True)


def same_sandbox_runs(pool: corral.Pool, *codes: str, **options) -> list[corral.ExecutionResult]:
    """Run ``codes`` one after another on the pool's single sandbox (asserting it is the same one)."""
    results = []
    for code in codes:
        results.append(pool.run(code, **options))
        deadline = time.monotonic() + 5
        while pool.statistics()["ready"] < 1 and time.monotonic() < deadline:  # back in the pool
            time.sleep(0.01)
    assert pool.statistics()["misses"] == 0 and all(result.warm_pool_hit for result in results), results
    return results


def host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (process level: the sandbox's processes are host processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def wait_until_gone(marker: str, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := host_processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


LEAVE_TRACES = """
import os, ctypes
for place in ("/tmp", "/home/user", "/dev/shm"):
    open(f"{place}/trace", "w").write("secret")
    try:
        os.setxattr(place, "user.secret", b"secret")
    except OSError:  # tmpfs has user xattrs from Linux 6.6 (a microVM guest's kernel may be older)
        pass
    os.utime(place, (123456789, 123456789))
libc = ctypes.CDLL(None, use_errno=True)
shm = libc.shmget(0x5EC, 4096, 0o1000 | 0o666)
print("SHM", shm >= 0)
os.environ["LEAKED"] = "secret"
os.putenv("LEAKED_PUT", "secret")
import builtins, json, random
builtins.leaked = "secret"
json.dumps = lambda *a, **k: "patched"
random.seed(42)
print("RANDOM", random.random())
"""

LOOK_FOR_TRACES = """
import os, ctypes, errno, json, builtins, random
for place in ("/tmp", "/home/user", "/dev/shm"):
    print(place, sorted(os.listdir(place)), os.listxattr(place), int(os.stat(place).st_mtime) == 123456789)
libc = ctypes.CDLL(None, use_errno=True)
print("SHM", libc.shmget(0x5EC, 4096, 0o666), errno.errorcode.get(ctypes.get_errno()))
print("SYSV", open("/proc/sysvipc/shm").read().count("\\n"))
print("ENV", "LEAKED" in os.environ or "LEAKED_PUT" in os.environ)
print("STATE", hasattr(builtins, "leaked"), json.dumps(1))
print("RANDOM", random.random())
"""


def test_nothing_of_a_run_is_left_for_the_next():
    with warm_pool() as pool:
        first, second = same_sandbox_runs(pool, LEAVE_TRACES, LOOK_FOR_TRACES)
        assert first.ok and "SHM True" in first.stdout, first
        lines = second.stdout.splitlines()
        assert lines[:3] == ["/tmp [] [] False", "/home/user [] [] False", "/dev/shm [] [] False"], second
        assert "SHM -1 ENOENT" in lines and "SYSV 1" in lines, second
        assert "ENV False" in lines and "STATE False 1" in lines, second
        seeded = [line for line in first.stdout.splitlines() if line.startswith("RANDOM")]
        assert seeded and seeded[0] not in lines


def test_xattrs_on_tmp_do_not_reach_the_next_run(isolation_level):
    """Finding 13.2: an extended attribute on a mount's root survived emptying the directory."""
    leave = ("import errno, os\ntry:\n    os.setxattr('/tmp', 'user.x', b'secret'); print(os.getxattr('/tmp', 'user.x'))\n"
             "except OSError as exc:\n    print('unsupported' if exc.errno == errno.EOPNOTSUPP else exc)")
    look = "import os\ntry:\n    print(os.getxattr('/tmp', 'user.x'))\nexcept OSError as exc:\n    print('gone', exc.errno)"
    with warm_pool() as pool:
        first, second = same_sandbox_runs(pool, leave, look)
        if first.stdout == "unsupported\n":  # tmpfs without user xattrs (Linux < 6.6): nothing to carry
            assert isolation_level == "microvm", first
        else:
            assert first.stdout == "b'secret'\n", first
        assert "secret" not in second.stdout and second.stdout.startswith("gone"), second


ZOMBIE_LEADER = """
import ctypes, os, threading, time
marker = "{marker}"
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        def spy():
            ctypes.CDLL(None).prctl(15, marker[:15].encode(), 0, 0, 0)  # PR_SET_NAME: findable from the host
            while True:
                with open("/home/user/spy-" + marker, "a") as handle:
                    handle.write("x")
                time.sleep(0.05)
        threading.Thread(target=spy, name=marker, daemon=True).start()
        time.sleep(0.2)
        ctypes.CDLL(None).syscall(60, 0)  # SYS_exit: only the leader thread ends, and shows Z
    os._exit(0)
time.sleep(0.5)
print("LEFT", marker)
"""


def test_a_thread_whose_leader_exited_dies_with_its_run(isolation_level):
    """Finding 13.1: the thread of an exited (zombie) leader survived the reset and spied on the next run."""
    marker = uuid.uuid4().hex
    probe = """
import os
mine = [p for p in os.listdir('/proc') if p.isdigit()]
spies = [name for name in os.listdir('/home/user') if name.startswith('spy-')]
print(sorted(mine), spies)
"""
    with warm_pool() as pool:
        first, second = same_sandbox_runs(pool, ZOMBIE_LEADER.format(marker=marker), probe)
        assert first.stdout == f"LEFT {marker}\n", first
        assert second.stdout == "['1', '2'] []\n", second  # alone in its pid namespace, a fresh home
        if isolation_level == "process":  # the sandbox's processes are host processes: look from outside
            comm_marker = marker[:15]
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and _threads_named(comm_marker):
                time.sleep(0.05)
            assert not _threads_named(comm_marker), "the zombie leader's thread outlived its run"


def _threads_named(name: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/comm") as handle:
                    if handle.read().strip() == name:
                        found.append(f"{pid}/{tid}")
        except OSError:
            continue
    return found


def test_a_zombie_leaders_thread_dies_with_a_timed_out_command():
    """Finding 13.1 for sessions and commands: a timeout kills the whole tree, zombie leaders' threads too."""
    marker = uuid.uuid4().hex
    code = ZOMBIE_LEADER.format(marker=marker).replace('print("LEFT", marker)', 'print("LEFT", flush=True)\ntime.sleep(60)')
    with corral.Sandbox() as sb:
        result = sb.run(code, timeout=1.5)
        assert result.timed_out and "LEFT" in result.stdout, result
        spy = f"spy-{marker}"
        size = len(sb.files.read(spy))
        time.sleep(0.5)
        assert len(sb.files.read(spy)) == size, "the zombie leader's thread still runs after the timeout"


def test_background_processes_end_with_their_run(isolation_level):
    marker = f"sleep {1000 + uuid.uuid4().int % 8000}"
    leave = f"""
import subprocess, os
subprocess.Popen({marker.split()!r}, start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sh", ["sh", "-c", "while :; do sleep 0.05; done"])
    os._exit(0)
print("SPAWNED")
"""
    look = "import os; print(sorted(p for p in os.listdir('/proc') if p.isdigit()))"
    with warm_pool() as pool:
        first, second = same_sandbox_runs(pool, leave, look)
        # the run's init (1) and the run itself (2): nothing of the first run
        assert first.stdout == "SPAWNED\n" and second.stdout == "['1', '2']\n", (first, second)
        if isolation_level == "process":
            assert not wait_until_gone(marker), "a background process outlived its run"


def test_runs_alive_at_the_same_time_cannot_reach_each_other(isolation_level):
    """Two isolated runs at once on one sandbox: no shared IPC, no abstract socket, no pid of the other."""
    holder = """
import ctypes, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
print("SHM", libc.shmget(0x5ED, 4096, 0o1000 | 0o666) >= 0)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("\\0corral-isolation-test")
server.listen()
tcp = socket.create_server(("127.0.0.1", 47123))
open("/dev/shm/held", "w").write("secret")
print("READY", flush=True)
time.sleep(3)
"""
    attacker = """
import ctypes, errno, os, signal, socket, time
time.sleep(1)
libc = ctypes.CDLL(None, use_errno=True)
print("SHM", libc.shmget(0x5ED, 4096, 0o666), errno.errorcode.get(ctypes.get_errno()))
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    client.connect("\\0corral-isolation-test")
    print("ABSTRACT connected")
except OSError as exc:
    print("ABSTRACT", errno.errorcode.get(exc.errno))
try:
    socket.create_connection(("127.0.0.1", 47123), timeout=2)
    print("LOOPBACK connected")
except OSError as exc:
    print("LOOPBACK", errno.errorcode.get(exc.errno))
print("SHMFILES", os.listdir("/dev/shm"))
print("PIDS", sorted(p for p in os.listdir("/proc") if p.isdigit()))
killed = []
for pid in range(2, 4096):
    if pid == os.getpid():
        continue
    try:
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    except OSError:
        pass
print("KILLED", killed)
"""

    async def both() -> tuple[corral.ExecutionResult, corral.ExecutionResult]:
        async with AsyncSandbox() as sandbox:
            def isolated(code: str):
                options = sandbox.run_options(code, timeout=10)
                return sandbox.execute(dataclasses.replace(options, isolated=True))

            results = await asyncio.gather(isolated(holder), isolated(attacker))
            after = await sandbox.execute(
                dataclasses.replace(sandbox.run_options("print('still fine')", timeout=10), isolated=True))
            assert after.stdout == "still fine\n", after
            return results

    held, attack = asyncio.run(both())
    assert "SHM True" in held.stdout and held.ok, held
    lines = attack.stdout.splitlines()
    assert "SHM -1 ENOENT" in lines, attack
    abstract = [line for line in lines if line.startswith("ABSTRACT")]
    # each run has a network namespace of its own: ECONNREFUSED (Landlock's scope, behind it, says EPERM)
    assert abstract and abstract[0] in ("ABSTRACT EPERM", "ABSTRACT ECONNREFUSED"), attack
    assert "LOOPBACK ECONNREFUSED" in lines, attack
    assert "SHMFILES []" in lines and "PIDS ['1', '2']" in lines and "KILLED []" in lines, attack


NAMESPACE_ESCAPES = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def report(name, rc):
    print(name, rc, errno.errorcode.get(ctypes.get_errno()) if rc == -1 else "")
flags = {"NEWUSER": 0x10000000, "NEWNS": 0x00020000, "NEWPID": 0x20000000, "NEWIPC": 0x08000000,
         "NEWNET": 0x40000000, "NEWUTS": 0x04000000, "NEWCGROUP": 0x02000000}
for name, flag in flags.items():
    report("UNSHARE " + name, libc.unshare(flag))
    pid = libc.syscall(56, flag | 17, 0, 0, 0, 0)  # clone(flags | SIGCHLD)
    if pid == 0:
        os._exit(0)
    report("CLONE " + name, -1 if pid < 0 else 0)
fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
report("SETNS", libc.setns(fd, 0))
os.makedirs("/tmp/m", exist_ok=True)
report("MOUNT", libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None))
report("UMOUNT", libc.umount2(b"/proc", 2))
print("USERNS_LIMIT", open("/proc/sys/user/max_user_namespaces").read().strip())
print("CAPS", [line.split()[1] for line in open("/proc/self/status") if line.startswith("Cap")])
"""


def test_user_code_cannot_make_namespaces_or_mounts():
    with warm_pool() as pool:
        (result,) = same_sandbox_runs(pool, NAMESPACE_ESCAPES)
    lines = result.stdout.splitlines()
    assert result.ok, result
    for line in lines:
        if line.split()[0] in ("UNSHARE", "CLONE", "SETNS", "MOUNT", "UMOUNT"):
            assert " -1 E" in line, result.stdout
    assert "USERNS_LIMIT 0" in lines
    caps = [line for line in lines if line.startswith("CAPS")][0]
    assert caps.count("0000000000000000") == 5, caps  # inheritable, permitted, effective, bounding, ambient


def test_the_next_run_works_after_a_memory_bomb_and_a_fork_bomb():
    memory_bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 2**20))"
    fork_bomb = """
import os
open('/tmp/bomb', 'w').write('x')
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    look = "import os; print(sorted(p for p in os.listdir('/proc') if p.isdigit()), os.listdir('/tmp'))"
    with corral.Pool(size=1, recycle=True, memory_mb=128, pids=64) as pool:
        bomb, fork, after = same_sandbox_runs(pool, memory_bomb, fork_bomb, look, timeout=3)
        assert not bomb.ok and (bomb.oom_killed or bomb.signal == 9), bomb
        assert not fork.ok, fork
        assert after.ok and after.stdout == "['1', '2'] []\n", after
        assert pool.run("print(6 * 7)").stdout == "42\n"


def test_files_and_stdin_reach_an_isolated_run():
    code = "import sys; print(open('data/in.txt').read(), open('/home/user/x.bin', 'rb').read(), sys.stdin.read())"
    with warm_pool() as pool:
        result = pool.run(code, files={"data/in.txt": "text", "x.bin": b"\x00\x01"}, stdin="piped")
        assert result.stdout == "text b'\\x00\\x01' piped\n", result
        again = pool.run("import os; print(os.listdir('.'))")
        assert again.stdout == "[]\n", again
        with pytest.raises(corral.InvalidInputError):
            pool.run("pass", files={"../escape": b"x"})
        with pytest.raises(corral.InvalidInputError):
            pool.run("pass", files={"/etc/passwd": b"x"})


@pytest.mark.levels("process")
def test_a_pool_replaces_a_sandbox_whose_zygote_died():
    """The zygote cannot be reached from inside; killed from the host, its sandbox is replaced."""
    with warm_pool() as pool:
        (first,) = same_sandbox_runs(pool, "print(1)")
        bwrap_pid = pool._async._ready._queue[0].instance.process.pid
        zygote = _zygote_of(bwrap_pid)
        os.kill(zygote, 9)
        time.sleep(0.2)
        result = pool.run("print(2)")
        assert result.stdout == "2\n" and not result.warm_pool_hit, result  # on a new sandbox
        assert pool.statistics()["misses"] == 1
        assert pool.run("print(3)").stdout == "3\n"


def _zygote_of(bwrap_pid: int) -> int:
    """Host pid of the zygote: the child of the sandbox's agent that runs the agent's own program."""
    def children(pid: int) -> list[int]:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]

    def is_agent(pid: int) -> bool:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"/opt/corral/agent.py" in handle.read()

    pending, agent = [bwrap_pid], None
    while pending and agent is None:  # bwrap may fork once before it execs the agent
        pid = pending.pop()
        if is_agent(pid):
            agent = pid
        else:
            pending.extend(children(pid))
    assert agent is not None
    zygotes = [child for child in children(agent) if is_agent(child)]
    assert len(zygotes) == 1, zygotes
    return zygotes[0]


@pytest.mark.parametrize("language, code", [
    ("javascript", "const fs = require('fs'); console.log(fs.readFileSync('in/a.txt', 'utf8'), fs.readdirSync('/tmp'));"
                   "fs.writeFileSync('/tmp/left', 'x')"),
    ("shell", "cat in/a.txt; ls /tmp; touch /tmp/left"),
])
def test_isolated_node_and_shell_runs(language, code):
    with corral.Pool(size=1, language=language, recycle=True) as pool:
        first, second = same_sandbox_runs(pool, code, code, files={"in/a.txt": "given"})
        for result in (first, second):  # the second run does not see the first one's /tmp/left
            assert result.ok and "given" in result.stdout and "left" not in result.stdout, result


@pytest.mark.parametrize("language, code", [
    ("python", "import os, signal; print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGTERM); print('alive')"),
    ("javascript", "console.log(process.pid); process.kill(process.pid, 'SIGTERM'); setTimeout(() => console.log('alive'), 500)"),
    ("shell", "echo $$; kill -TERM $$; echo alive"),
])
def test_an_isolated_run_is_not_its_namespaces_init(language, code):
    """An init ignores the signals it sends itself: user code must not be one, or ``kill $$`` does nothing."""
    with corral.Pool(size=1, language=language) as pool:
        result = pool.run(code)
        killed = pool.run("import os; print('x', flush=True); os.kill(os.getpid(), 9)") if language == "python" else None
    assert result.stdout.split()[0] != "1" and "alive" not in result.stdout, result
    assert result.exit_code == 128 + 15 and result.signal == 15, result
    if killed is not None:  # the run's end is passed on as it was, SIGKILL included
        assert (killed.exit_code, killed.signal, killed.stdout) == (137, 9, "x\n"), killed


def test_a_child_the_run_forked_does_not_decide_its_exit_code(isolation_level):
    code = ("import os, sys, time\nif os.fork() == 0:\n    sys.exit(0)\n"
            "os.wait(); time.sleep(0.3); print('done'); sys.exit(7)")
    with corral.Pool(size=1) as pool:
        result = pool.run(code)
    assert (result.exit_code, result.stdout) == (7, "done\n"), result


def test_corral_run_shares_a_warm_sandbox_with_isolated_runs(monkeypatch):
    first = corral.run("open('/tmp/mine', 'w').write('x'); print(1)")
    second = corral.run("import os; print(os.listdir('/tmp'))")
    assert not first.warm_pool_hit and first.timing.boot_ms > 0, first
    assert second.warm_pool_hit and second.timing.boot_ms == 0 and second.stdout == "[]\n", second
    assert corral.run("print(3)", files={"f.txt": "x"}).warm_pool_hit
    assert not corral.run("print(4)", fresh=True).warm_pool_hit
    # another configuration is another shared sandbox
    assert not corral.run("print(5)", memory_mb=200).warm_pool_hit
    assert corral.run("print(6)", memory_mb=200).warm_pool_hit
    monkeypatch.setenv("CORRAL_FRESH_SANDBOX", "1")
    assert not corral.run("print(7)").warm_pool_hit


@pytest.mark.levels("process")
def test_peak_memory_of_a_pooled_run_is_its_own():
    """A run must not learn an earlier run's memory use from its own result."""
    with warm_pool() as pool:
        (big,) = same_sandbox_runs(pool, "x = bytearray(96 * 2**20); x[::4096] = b'1' * len(x[::4096])")
        time.sleep(0.5)  # the kernel frees the run's memory as its namespaces go, after the answer
        (small,) = same_sandbox_runs(pool, "print(1)")
        assert big.memory_peak_mb > 90, big
        assert small.memory_peak_mb < 60, small


INIT_ATTACK = """
import os, signal, time
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGCHLD, signal.SIGPIPE, signal.SIGSEGV, signal.SIGSTOP, signal.SIGKILL):
    try:
        os.kill(1, sig)  # Landlock's signal scope refuses it where the kernel has one; else the kernel drops it
    except PermissionError:
        pass
time.sleep(0.2)
for path in ["/proc/1/mem", "/proc/1/environ"] + ["/proc/1/fd/%d" % fd for fd in range(8)]:
    try:
        with open(path, "rb") as handle:
            print("READ", path, len(handle.read(1)))
    except OSError as exc:
        print("DENIED", path, exc.errno)
print("INIT", open("/proc/1/status").read().split("State:")[1].split()[0])
raise SystemExit(3)
"""


def test_a_run_cannot_signal_or_open_its_init():
    """The run's init (PID 1, forked from the zygote: it holds a pipe to it) is not moved by any signal from its
    run, not even SIGKILL or SIGSTOP, and its memory, environment and fds cannot be opened; the run ends as its
    own process did, and the next run works."""
    with warm_pool() as pool:
        attack, after = same_sandbox_runs(pool, INIT_ATTACK, "print(6 * 7)")
    assert attack.exit_code == 3 and attack.signal is None, attack
    assert "READ" not in attack.stdout and "DENIED /proc/1/mem" in attack.stdout, attack
    assert "\nINIT S" in attack.stdout, attack  # still there, sleeping: not stopped, not killed
    assert after.stdout == "42\n", after


def test_concurrent_callers_never_make_a_pooled_sandbox_refuse_an_isolated_run(isolation_level, caplog):
    runs = 24 if isolation_level == "microvm" else 80
    with corral.Pool(size=4, isolation=isolation_level) as pool, ThreadPoolExecutor(4) as callers:
        for n in range(8):  # every sandbox serves a few runs first: a spare is prepared after each
            pool.run(f"print({n})")
        results = list(callers.map(lambda n: pool.run(f"print({n})"), range(runs)))
        results += [pool.run(f"print({n})") for n in range(runs, runs + 8)]  # each sandbox still isolates runs
        runs += 8
    assert [result.stdout for result in results] == [f"{n}\n" for n in range(runs)]
    refusals = [record for record in caplog.records if "refused an isolated run" in record.getMessage()]
    assert not refusals  # a refused run is retried on a new sandbox: it still succeeds, but the sandbox is lost


def test_a_user_site_the_run_brings_in_its_files_is_importable():
    """The spare looks for the user site before the request; a run's own files may still bring one."""
    with warm_pool() as pool:
        site = ".local/lib/python%d.%d/site-packages" % sys.version_info[:2]
        result = pool.run("import corral_user_module; print(corral_user_module.X)",
                          files={f"{site}/corral_user_module.py": "X = 42\n"})
        assert result.stdout == "42\n", result
        again = pool.run("import importlib.util; print(importlib.util.find_spec('corral_user_module'))")
        assert again.stdout == "None\n", again  # the next run's home is fresh: no user site any more
