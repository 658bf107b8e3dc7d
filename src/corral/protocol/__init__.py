"""The wire protocol between the host and the in-sandbox agent.

``wire`` is stdlib-only (the agent imports it); ``messages`` holds the pydantic
models the host validates every frame with.
"""

from corral.protocol import wire
from corral.protocol.messages import (
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
    Request,
    ResetRequest,
    ConfigureRequest,
    Started,
    TERMINAL_TYPES,
    encode_request,
    parse_event,
)

__all__ = [
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
    "Request",
    "Started",
    "ResetRequest",
    "ConfigureRequest",
    "TERMINAL_TYPES",
    "encode_request",
    "parse_event",
    "wire",
]
