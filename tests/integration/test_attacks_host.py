"""Attacks on what the host exposes to a sandbox: kernel socket families, the host's services.

Like tests/integration/test_attacks.py, each test mounts an attack that works
without the protection it targets and asserts on the evidence that it failed.
No test here sends a byte to vsock on the host: a socket that cannot be created
is the whole proof on the process level.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys

import pytest

import corral
from corral.lease import wait_for_teardowns

pytestmark = pytest.mark.sandbox

#: What a sandbox may open; everything else must fail (see backends/seccomp.py).
ALLOWED_FAMILIES = {1, 2, 10, 16}  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK (NETLINK_ROUTE only)

SOCKET_FAMILY_PROBE = r"""
import ctypes, errno, json, socket
created = {}
for family in range(0, 70):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET):
        try:
            socket.socket(family, kind).close()
        except OSError:
            continue
        created.setdefault(family, []).append(kind)
pairs = []
for family in range(0, 70):
    try:
        a, b = socket.socketpair(family, socket.SOCK_STREAM)
    except OSError:
        continue
    a.close(); b.close(); pairs.append(family)
libc = ctypes.CDLL(None, use_errno=True)
# the kernel reads the family as a 32-bit int: bits above it must not smuggle AF_VSOCK (40) past the filter
sneaky = libc.syscall(41, ctypes.c_long((1 << 32) | 40), socket.SOCK_STREAM, 0)
netlink = {}
for protocol in (0, 4, 9, 15, 16):  # ROUTE, SOCK_DIAG, AUDIT, KOBJECT_UEVENT, GENERIC
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol).close()
        netlink[protocol] = "created"
    except OSError as exc:
        netlink[protocol] = errno.errorcode[exc.errno]
uring = libc.syscall(425, 8, ctypes.create_string_buffer(120))  # io_uring_setup: IORING_OP_SOCKET bypasses seccomp
print(json.dumps({"created": created, "pairs": pairs, "sneaky": sneaky, "netlink": netlink, "uring": uring}))
"""


@pytest.mark.levels("process")
def test_only_unix_inet_and_route_netlink_sockets_can_be_created():
    result = corral.run(SOCKET_FAMILY_PROBE, timeout=30)
    assert result.ok, result
    found = json.loads(result.stdout)
    created = {int(family) for family in found["created"]}
    assert created <= ALLOWED_FAMILIES, f"families a sandbox could open: {sorted(created - ALLOWED_FAMILIES)}"
    assert {1, 2, 10} <= created  # the filter must not break ordinary networking
    assert found["pairs"] == [1]
    assert found["sneaky"] == -1, "AF_VSOCK with high bits set got past the filter"
    assert found["netlink"] == {"0": "created", "4": "EPROTONOSUPPORT", "9": "EPROTONOSUPPORT",
                                "15": "EPROTONOSUPPORT", "16": "EPROTONOSUPPORT"}
    assert found["uring"] == -1


def test_vsock_does_not_reach_the_host(isolation_level):
    """The host is CID 2. In a process sandbox the socket must not even be created (and the probe
    never connects: there, CID 2 is the real hypervisor). A microVM has no vsock device, so the
    guest's own kernel has no transport to anyone: connecting reaches nothing."""
    code = r"""
import errno, socket
try:
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
except OSError as exc:
    print("create", errno.errorcode[exc.errno])
else:
    if PROCESS_LEVEL:
        raise SystemExit("created")
    s.settimeout(5)
    try:
        s.connect((2, 1024))
        print("connected")
    except OSError as exc:
        print("connect", errno.errorcode.get(exc.errno, exc.errno))
"""
    result = corral.run(f"PROCESS_LEVEL = {isolation_level == 'process'}\n{code}", timeout=30)
    assert result.ok, result
    assert "connected" not in result.stdout
    if isolation_level == "process":
        assert result.stdout == "create EAFNOSUPPORT\n"


@pytest.mark.levels("microvm")
def test_the_guest_kernel_loads_no_more_modules():
    """Everything the guest needs is loaded by its init; afterwards even root in the guest cannot
    load a module (a vsock transport, say) it brought along."""
    result = corral.run("print(open('/proc/sys/kernel/modules_disabled').read().strip())", timeout=30)
    assert result.stdout == "1\n", result


#: Fills the host's services from inside: processes that, for FLOOD_S seconds, keep as many
#: connections open to every host endpoint the sandbox can reach as their descriptor limit allows,
#: replacing the oldest with a new one as fast as they can (the host closes some: it is the
#: connections the host holds at once that must stay bounded). Each prints its count when done.
CONNECTION_FLOOD = r"""
import collections, errno, os, socket, sys, time
TARGETS = [(socket.AF_UNIX, "/run/corral/ports.sock"), (socket.AF_UNIX, "/run/corral/egress.sock"),
           (socket.AF_INET, ("127.0.0.1", 3128))]  # the agent's relay: one host connection per connection
TARGETS = [(family, address) for family, address in TARGETS if family != socket.AF_UNIX or os.path.exists(address)]
HELD_MAX = 3900  # below the sandbox's RLIMIT_NOFILE of 4096 per process
children = []
for _ in range(PROCESSES):
    pid = os.fork()
    if pid == 0:
        held, opened, end = collections.deque(), 0, time.monotonic() + FLOOD_S
        while time.monotonic() < end:
            for family, address in TARGETS:
                if len(held) >= HELD_MAX:
                    held.popleft().close()
                connection = socket.socket(family, socket.SOCK_STREAM)
                connection.setblocking(False)
                try:
                    connection.connect(address)
                except BlockingIOError:  # the listener's backlog is full (unix) or in progress (tcp)
                    if family == socket.AF_UNIX:
                        connection.close()
                        continue
                except OSError:
                    connection.close()
                    continue
                held.append(connection)
                opened += 1
        sys.stdout.write(f"{opened}\n")
        sys.stdout.flush()
        time.sleep(120)
        os._exit(0)
    children.append(pid)
print("flooding", flush=True)
for pid in children:
    os.waitpid(pid, 0)
"""


def own_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_connection_flood_leaves_the_host_its_descriptors(isolation_level):
    """Thousands of connections from one sandbox to its host services (ports socket, egress proxy,
    the relay) must cost the host a bounded number of descriptors, and another sandbox must still
    start and run meanwhile. Without the caps the host's table fills and every start fails (EMFILE)."""
    processes = 6 if isolation_level == "process" else 2
    before = peak = own_fd_count()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, own_fd_count())
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    options = {"network": corral.Network.allow(["example.invalid"]), "expose": [corral.PortMapping(internal=8080)]}
    try:
        async with corral.AsyncSandbox(**options) as attacker:
            opened, bystander_ran = [], None
            code = f"PROCESSES = {processes}\nFLOOD_S = 20\n{CONNECTION_FLOOD}"
            async with contextlib.aclosing(attacker.stream(code, timeout=300)) as events:
                async for event in events:
                    if isinstance(event, corral.OutputEvent):
                        for line in event.data.split():
                            if line == "flooding":
                                await asyncio.sleep(5)  # the flood has filled what it can
                                async with corral.AsyncSandbox() as bystander:
                                    bystander_ran = await bystander.run("print(6 * 7)", timeout=60)
                            else:
                                opened.append(int(line))
                    if len(opened) == processes:
                        break
        await wait_for_teardowns()  # the attacker's services are closed, its descriptors released
    finally:
        sampler.cancel()
    assert sum(opened) > 10_000, f"the flood opened only {opened} connections"
    assert bystander_ran is not None and bystander_ran.stdout == "42\n", bystander_ran
    # the ports socket holds at most 256, the proxy 64 (x2 with upstreams), the bystander a few;
    # without the caps, one per connection (6600 measured, and the table's 20000 reached with more time)
    assert peak - before < 700, f"the host went from {before} to {peak} descriptors"
    assert own_fd_count() <= before + 2


#: Starts one sandbox (with an exposed port, so its services start too) under a descriptor limit of
#: EXTRA above what the process already holds, then reports what is left of it after teardown.
START_UNDER_FD_LIMIT = r"""
import asyncio, json, os, resource, sys, traceback
from pathlib import Path
import corral
from corral.backends import registry
from corral.backends.microvm.snapshot import template_root
from corral.host.data_dir import data_dir
from corral.host.sandbox_names import new_name
from corral.lease import wait_for_teardowns

LEVEL, EXTRA = sys.argv[1], int(sys.argv[2])

def children():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2:].split()[1]) == os.getpid():
            found.append(pid)
    return found

async def main():
    registry.resolve(LEVEL)  # probed before the limit: it is the start under test
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (before + EXTRA, hard))
    try:
        async with corral.AsyncSandbox(isolation=LEVEL, expose=[corral.PortMapping(internal=8080)]) as box:
            await box.run("print(1)")
        outcome = "started"
    except corral.CorralError as exc:
        outcome = type(exc).__name__
    except Exception:  # a failed start must still be one of corral's errors
        outcome = "unexpected " + traceback.format_exc()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await wait_for_teardowns()
    prefix = new_name().rsplit("-", 1)[0]
    for _ in range(50):  # a removal that had no descriptor to work with is retried a moment later
        left = [str(path) for path in Path("/sys/fs/cgroup").glob(f"*/corral/{prefix}*")]
        left += [str(path) for path in (data_dir() / "sandboxes").glob(f"{prefix}*")]
        left += [str(path) for path in template_root().glob(f".staging-*-{os.getpid()}")]  # a template being taken
        if not left:
            break
        await asyncio.sleep(0.1)
    print(json.dumps({"outcome": outcome, "left": left, "children": children(),
                      "descriptors": len(os.listdir("/proc/self/fd")) - before}))

asyncio.run(main())
"""


def test_a_start_that_fails_anywhere_leaves_nothing_behind(isolation_level, tmp_path):
    """Every descriptor limit from 0 up, until starts succeed: each start fails at a different step
    (cgroup files, the filter's memfd, pipes, bwrap or QEMU, sockets, services) and must leave no
    cgroup, no service directory, no process and no descriptor behind."""
    script = tmp_path / "start.py"
    script.write_text(START_UNDER_FD_LIMIT)
    outcomes, successes = [], 0
    for extra in range(0, 60):
        report = subprocess.run([sys.executable, str(script), isolation_level, str(extra)], capture_output=True,
                                text=True, timeout=120)
        assert report.returncode == 0, report.stderr[-3000:]
        found = json.loads(report.stdout.splitlines()[-1])
        assert found["left"] == [] and found["children"] == [], (extra, found)
        assert found["descriptors"] <= 0, (extra, found)
        assert not found["outcome"].startswith("unexpected"), (extra, found)
        outcomes.append(found["outcome"])
        successes = successes + 1 if found["outcome"] == "started" else 0
        if successes == 2:
            break
    assert "SandboxStartError" in outcomes and successes == 2, outcomes
