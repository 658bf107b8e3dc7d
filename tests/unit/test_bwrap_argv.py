"""The bwrap command line is a pure function of the layout."""

from __future__ import annotations

from corral.backends.process.bwrap import HOME, SandboxLayout, bwrap_argv


def layout(**overrides):
    fields = dict(runtime_dir="/rt", agent_config="{}", disk_bytes=1 << 20, shm_bytes=1 << 19, seccomp_fd=7,
                  system_dirs=("/usr",), symlinks=(("/bin", "usr/bin"),), etc_entries=("ssl",))
    fields.update(overrides)
    return SandboxLayout(**fields)


def pairs(argv, flag):
    return [tuple(argv[i + 1 : i + 3]) for i, arg in enumerate(argv) if arg == flag]


def test_every_namespace_and_no_privilege():
    argv = bwrap_argv("/bwrap", layout())
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
                 "--as-pid-1", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--uid") + 1] == "1000"
    assert "--share-net" not in argv


def test_only_system_directories_are_bound_and_read_only():
    argv = bwrap_argv("/bwrap", layout())
    assert "--bind" not in argv and "--dev-bind" not in argv
    sources = [source for source, _ in pairs(argv, "--ro-bind")]
    assert "/usr" in sources and "/etc/ssl" in sources and "/rt" in sources
    for forbidden in ("/", "/root", "/home", "/tmp", "/etc", "/var", "/run"):
        assert forbidden not in sources


def test_writable_space_is_sized_tmpfs():
    argv = bwrap_argv("/bwrap", layout(disk_bytes=12345, shm_bytes=678))
    tmpfs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--tmpfs"]
    assert tmpfs == ["/dev/shm", "/tmp", HOME]
    sizes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--size"]
    assert sizes == ["678", "12345", "12345"]


def test_seccomp_fd_and_agent_command():
    argv = bwrap_argv("/bwrap", layout(seccomp_fd=9, agent_config='{"x":1}'))
    assert argv[argv.index("--seccomp") + 1] == "9"
    assert argv[-4:] == ["/usr/bin/python3", "-I", "/opt/corral/agent.py", '{"x":1}']
    assert "--seccomp" not in bwrap_argv("/bwrap", layout(seccomp_fd=None))
