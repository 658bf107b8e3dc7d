"""What every sandbox looks like from the inside, on every level: its user, home, environment, writable paths."""

from __future__ import annotations

from corral.protocol.wire import SANDBOX_HOME

HOME = SANDBOX_HOME
#: uid/gid that user code runs as inside the sandbox.
SANDBOX_UID = 1000
SANDBOX_GID = 1000
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The environment every run starts from (the sandbox's own ``env`` goes on top).
SANDBOX_ENV = {"HOME": HOME, "PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "USER": "user", "TMPDIR": "/tmp"}
#: The only places Landlock lets sandboxed code create or change files.
#: /proc is there so each child can raise its own OOM score (the OOM killer
#: must pick user code, not the agent); /dev/shm is a sized tmpfs.
WRITABLE_PATHS = (HOME, "/tmp", "/dev/shm", "/proc", "/dev/null", "/dev/zero", "/dev/full", "/dev/tty",
                  "/dev/pts", "/dev/ptmx", "/dev/random", "/dev/urandom")
#: What a reset empties (path, the mode it is left with).
WIPE_PATHS = ((HOME, 0o755), ("/tmp", 0o1777), ("/dev/shm", 0o1777))
