"""The seccomp filter: every rule it names exists, and the compiled program denies what it lists.

The program is loaded (as bwrap loads it) into a forked child of the test, which then makes the
calls; the parent only reads the child's answers.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket

import pytest

from corral.backends import seccomp

pytest.importorskip("pyseccomp")

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def under_filter(probe) -> dict:
    """Run ``probe()`` (returns JSON-able data) in a child that has loaded the compiled filter."""
    program = seccomp.filter_program()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load the program, probe, report, exit without cleanup
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fprog = _SockFprog(len(program) // 8, program)
            assert libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            assert libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
            os.write(write_end, json.dumps(probe()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(data)


def _errno_of(number: int, *args: int) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    result = libc.syscall(number, *[ctypes.c_long(arg) for arg in args])
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]


def test_every_denied_name_resolves_and_an_unknown_one_fails_the_build():
    for name in seccomp.DENIED_SYSCALLS:
        seccomp.syscall_number(name)  # raises for a name nobody can number
    with pytest.raises(ValueError, match="lsm_set_selfattr"):
        seccomp.syscall_number("lsm_set_selfattr")


def test_names_libseccomp_lacks_are_denied_by_number():
    assert seccomp.syscall_number("lsm_set_self_attr", "x86_64") == 460
    with pytest.raises(ValueError):
        seccomp.syscall_number("no_such_call", "x86_64")
    number = seccomp.syscall_number("lsm_set_self_attr")
    found = under_filter(lambda: {"lsm_set_self_attr": _errno_of(number, 0, 0, 0, 0),
                                  "getpid": _errno_of(seccomp.syscall_number("getpid"))})
    assert found == {"lsm_set_self_attr": "EPERM", "getpid": "ok"}


def test_socket_families_outside_the_allow_list_are_refused():
    def probe() -> dict:
        socket_number = seccomp.syscall_number("socket")
        pair_number = seccomp.syscall_number("socketpair")
        fds = (ctypes.c_int * 2)()
        libc = ctypes.CDLL(None, use_errno=True)
        created, paired = [], []
        for family in [*range(0, 70), 1 << 32 | socket.AF_VSOCK, 1 << 32 | socket.AF_UNIX, 2**31, 2**64 - 1]:
            fd = libc.syscall(socket_number, ctypes.c_long(family), socket.SOCK_DGRAM, 0)
            if fd >= 0:
                created.append(family)
                os.close(fd)
            elif ctypes.get_errno() != errno.EAFNOSUPPORT:
                created.append(f"{family}: {errno.errorcode[ctypes.get_errno()]}")
            if libc.syscall(pair_number, ctypes.c_long(family), socket.SOCK_DGRAM, 0, fds) == 0:
                paired.append(family)
                os.close(fds[0])
                os.close(fds[1])
        return {"created": created, "paired": paired, "route": _errno_of(socket_number, 16, 3, 0),
                "diag": _errno_of(socket_number, 16, 3, 4), "uevent": _errno_of(socket_number, 16, 2, 15)}

    found = under_filter(probe)
    assert found == {"created": [1, 2, 10, 16], "paired": [1], "route": "ok",
                     "diag": "EPROTONOSUPPORT", "uevent": "EPROTONOSUPPORT"}


_ONE_INSTRUCTION = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # BPF_RET SECCOMP_RET_ALLOW


def test_a_compiled_filter_is_kept_and_compiled_again_only_when_an_input_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    compiled = []

    def compile_program() -> bytes:
        compiled.append(1)
        return _ONE_INSTRUCTION

    assert seccomp.cached_program("t", compile_program) == _ONE_INSTRUCTION
    assert seccomp.cached_program("t", compile_program) == _ONE_INSTRUCTION
    assert len(compiled) == 1
    [kept] = (tmp_path / seccomp.CACHE_DIR).glob("t-*.bpf")
    assert kept.name == f"t-{seccomp.compile_inputs_digest()}.bpf"
    kept.write_bytes(b"partial")  # not whole instructions: never loaded, compiled again
    assert seccomp.cached_program("t", compile_program) == _ONE_INSTRUCTION and len(compiled) == 2
    monkeypatch.setattr(seccomp, "compile_inputs_digest", lambda: "changed")
    assert seccomp.cached_program("t", compile_program) == _ONE_INSTRUCTION and len(compiled) == 3
    assert sorted(path.name for path in (tmp_path / seccomp.CACHE_DIR).iterdir()) == [kept.name, "t-changed.bpf"]


def test_the_kept_filters_are_what_libseccomp_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path))
    user = seccomp._compile(seccomp.DENIED_SYSCALLS, seccomp._CLONE_NEW_NAMESPACE_FLAGS)
    agent = seccomp._compile(tuple(name for name in seccomp.DENIED_SYSCALLS if name not in seccomp.RUN_SETUP_SYSCALLS),
                             (seccomp._CLONE_NEWUSER,))
    for function, expected in ((seccomp.filter_program, user), (seccomp.agent_filter_program, agent)):
        assert function.__wrapped__() == expected  # compiled and kept
        assert function.__wrapped__() == expected  # read back
    assert len(list((tmp_path / seccomp.CACHE_DIR).glob("*.bpf"))) == 2


def test_an_unwritable_data_directory_compiles_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a directory")
    assert seccomp.cached_program("t", lambda: _ONE_INSTRUCTION) == _ONE_INSTRUCTION
