"""What the guest looks like from the inside: the agent's configuration and the port's name.

Shared by the image builder (which bakes the configuration into the root file
system) and the VM runner (which connects to the port). Per-VM settings (env,
the pre-started language, fresh entropy) are not baked in: the host sends
them in a ``configure`` request after every boot or restore, so one image and
one memory snapshot serve every sandbox.
"""

from __future__ import annotations

from corral.backends import interior

#: Name of the virtio-serial port the agent speaks the protocol on.
AGENT_PORT_NAME = "corral"
#: Name of the virtio-serial port carrying the host streams; init gives it to the agent as fd 3.
STREAMS_PORT_NAME = "corral-streams"
STREAMS_FD = 3
#: Where the image keeps the agent's start-up configuration (JSON).
AGENT_CONFIG_PATH = "/opt/corral/agent.json"
#: Where the guest's init mounts cgroup2; the agent makes the user code's group below it (root-owned:
#: Landlock lets the agent write there, file permissions keep user code out).
CGROUP_ROOT = "/sys/fs/cgroup"
#: uid/gid that user code runs as; the agent itself stays root (PID 1 of the VM).
GUEST_USER = (interior.SANDBOX_UID, interior.SANDBOX_GID)


def agent_config() -> dict:
    """The agent's start-up configuration inside every microVM guest."""
    return {
        "home": interior.HOME,
        "env": dict(interior.SANDBOX_ENV),
        "rlimits": {"RLIMIT_CORE": 0, "RLIMIT_NOFILE": 4096},
        "landlock_paths": [*interior.WRITABLE_PATHS, CGROUP_ROOT],
        "wipe_paths": [list(entry) for entry in interior.WIPE_PATHS],
        "protect_agent": True,
        "prefork": None,
        "user": list(GUEST_USER),
        "oom_score_adj": -1000,
        "report_oom": True,
        "user_cgroup": f"{CGROUP_ROOT}/sandbox",
        "streams_fd": STREAMS_FD,
    }
