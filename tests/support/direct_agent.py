"""Start the real corral agent as a plain host process, for the direct test backend.

UNSAFE: NO ISOLATION. Whatever the agent runs, runs on the host as the user of the tests.

The agent is written to be PID 1 of its own sandbox. Here it is an ordinary
host process, so before it starts, its view of "every process in the sandbox"
(``corral.agent.tree.process_table``, which a reset and the killing of a run's
tree walk) is narrowed to its own descendants, and it becomes a child
subreaper so that orphans of its runs stay its descendants, as they would in
a PID namespace. Removing System V IPC objects on reset is turned off: on the
host they are everybody's. Isolated runs (fresh namespaces per run) are refused
as invalid: this backend makes no namespaces at all. Everything else is the agent as it runs in a
sandbox, speaking the real protocol on stdin/stdout.

Usage: ``python3 -I direct_agent.py BUNDLE_DIR CONFIG_JSON``, where BUNDLE_DIR is the agent bundle
the sandboxes mount (:func:`corral.host.runtime_dir.runtime_dir`: the agent and the protocol's
plain-data part, without the host package's dependencies).
"""

from __future__ import annotations

import ctypes
import os
import sys

sys.path.insert(0, sys.argv.pop(1))
from corral.agent import loop, reset, tree  # noqa: E402  (from the bundle on the path above)

_PR_SET_CHILD_SUBREAPER = 36
_AGENT_PID = os.getpid()
_host_process_table = tree.process_table


def own_process_table() -> dict[int, tuple[int, str, int]]:
    """The host's process table restricted to the agent and its descendants."""
    table = _host_process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    own, pending = {}, [_AGENT_PID]
    while pending:
        pid = pending.pop()
        if pid in table and pid not in own:
            own[pid] = table[pid]
            pending.extend(children.get(pid, ()))
    return own


_checked_exec = loop.Agent._checked_exec


def refuse_isolated_runs(agent: loop.Agent, request: dict) -> dict:
    """The agent's own check of an exec request, refusing isolated runs (they would make namespaces)."""
    if request.get("isolated"):
        raise loop.RequestError("invalid", "isolated runs need per-run isolation, which the direct test backend "
                                "does not have (it makes no namespaces)")
    return _checked_exec(agent, request)


def main() -> None:
    """Narrow the agent's reach to its own process tree and refuse isolated runs, then run it."""
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot become a child subreaper")
    tree.process_table = own_process_table
    reset.remove_sysv_ipc = lambda: None
    loop.Agent._checked_exec = refuse_isolated_runs
    loop.main()


if __name__ == "__main__":
    main()
