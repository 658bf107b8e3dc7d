"""Hosted sandboxes: the same calls against a corral server (``server=URL``) or in process.

``HostedSandbox.create/connect/list/resume`` (also reachable as
``corral.Sandbox.create`` and friends) return a sandbox with an id that can be
paused into a snapshot and resumed later. With ``server=`` every call goes
over HTTP (:mod:`corral.client.remote`); without it the same service the
server runs is used in process (:mod:`corral.client.local`).
"""

from corral.client.handle import AsyncHostedSandbox
from corral.client.sync import HostedSandbox, HostedTerminal
from corral.client.terminal import AsyncHostedTerminal
from corral.contract.schemas import LogEvent, SandboxInfo, SnapshotInfo
from corral.contract.states import SandboxState

__all__ = ["AsyncHostedSandbox", "AsyncHostedTerminal", "HostedSandbox", "HostedTerminal", "LogEvent", "SandboxInfo", "SandboxState", "SnapshotInfo"]
