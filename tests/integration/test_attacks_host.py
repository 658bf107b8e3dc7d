"""Attacks on what the host exposes to a sandbox: kernel socket families, the host's services.

Like tests/integration/test_attacks.py, each test mounts an attack that works
without the protection it targets and asserts on the evidence that it failed.
No test here sends a byte to vsock on the host: a socket that cannot be created
is the whole proof on the process level.
"""

from __future__ import annotations

import json

import pytest

import corral

pytestmark = pytest.mark.sandbox

#: What a sandbox may open; everything else must fail (see backends/process/seccomp.py).
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
