"""The wire protocol between the host and the in-sandbox agent.

``wire`` is stdlib-only (the agent imports it); ``messages`` holds the pydantic
models the host validates every frame with. Importing ``corral.protocol.wire``
does not build them: the names of ``messages`` below are loaded on first use
(the CLI's warm-daemon client needs ``wire``'s limits and nothing of pydantic).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from corral.protocol import wire

if TYPE_CHECKING:
    from corral.protocol.messages import (
        Result,
        RunError,
        FileStat,
        FileStatRequest,
        FileMkdirRequest,
        FileRenameRequest,
        FsEvent,
        ProcessAttachRequest,
        ProcessCloseStdinRequest,
        ProcessInfo,
        ProcessInputRequest,
        ProcessListRequest,
        ProcessListing,
        ProcessSignalRequest,
        ProcessStartRequest,
        ProcessStarted,
        StatEntry,
        WatchStartRequest,
        WatchStarted,
        Ack,
        CancelRequest,
        DirEntry,
        DirListing,
        EgressRequest,
        Error,
        Event,
        ExecDone,
        ExecRequest,
        FileData,
        FileListRequest,
        FileReadRequest,
        FileRemoveRequest,
        FileWriteRequest,
        Hello,
        Output,
        PingRequest,
        PortConnectRequest,
        PtyInputRequest,
        PtyOpenRequest,
        PtyResizeRequest,
        Request,
        ResetRequest,
        RunFile,
        ConfigureRequest,
        ReseedRequest,
        TERMINAL_TYPES,
        encode_request,
        parse_event,
    )

__all__ = [
    "Result",
    "RunError",
    "FileStat",
    "FileStatRequest",
    "FileMkdirRequest",
    "FileRenameRequest",
    "FsEvent",
    "ProcessAttachRequest",
    "ProcessCloseStdinRequest",
    "ProcessInfo",
    "ProcessInputRequest",
    "ProcessListRequest",
    "ProcessListing",
    "ProcessSignalRequest",
    "ProcessStartRequest",
    "ProcessStarted",
    "StatEntry",
    "WatchStartRequest",
    "WatchStarted",
    "Ack",
    "CancelRequest",
    "DirEntry",
    "DirListing",
    "EgressRequest",
    "Error",
    "Event",
    "ExecDone",
    "ExecRequest",
    "FileData",
    "FileListRequest",
    "FileReadRequest",
    "FileRemoveRequest",
    "FileWriteRequest",
    "Hello",
    "Output",
    "PingRequest",
    "PortConnectRequest",
    "PtyInputRequest",
    "PtyOpenRequest",
    "PtyResizeRequest",
    "Request",
    "ResetRequest",
    "RunFile",
    "ConfigureRequest",
    "ReseedRequest",
    "TERMINAL_TYPES",
    "encode_request",
    "parse_event",
    "wire",
]


def __getattr__(name: str) -> object:
    """A name of ``messages``, imported (with pydantic) on first use."""
    if name in __all__ and name != "wire":
        return getattr(importlib.import_module("corral.protocol.messages"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
