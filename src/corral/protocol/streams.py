"""Host streams: many byte streams over one channel, for VMs whose agent cannot reach host sockets.

Stdlib only; both ends import it. The agent opens a stream to one of the
host's service sockets (the egress proxy, port forwarding) by name; the host
connects it and both sides copy bytes. Every frame is a 9-byte header (kind,
stream id, length, big-endian) and a payload of ``length`` bytes:

- ``OPEN`` (agent to host): the payload is the service socket's name.
- ``DATA``: payload bytes, at most :data:`MAX_DATA` per frame.
- ``CLOSE``: the sender will send nothing more (a half-close); a stream ends once both sides sent it.
- ``CREDIT``: the receiver has passed ``length`` more bytes on; the sender may send that much more.

Flow control is per stream: a side sends at most :data:`WINDOW` bytes the
other has not credited back, so one slow reader cannot make either end buffer
without bound or stall the other streams.
"""

from __future__ import annotations

import struct

OPEN, DATA, CLOSE, CREDIT = 1, 2, 3, 4
HEADER = struct.Struct(">BII")
MAX_DATA = 64 * 1024
WINDOW = 256 * 1024
#: Service sockets a stream may be opened to.
SERVICES = ("egress.sock", "ports.sock")


def frame(kind, stream, payload=b"", length=None):
    """One encoded frame (``length`` is the credit amount for CREDIT frames)."""
    return HEADER.pack(kind, stream, len(payload) if length is None else length) + payload


def split_frames(buffer):
    """Parse complete frames off the front of ``buffer`` (a bytearray, consumed); yield (kind, stream, value).

    ``value`` is the payload, or the credit amount for CREDIT frames. Raises ValueError on a
    malformed frame (the channel is then unusable).
    """
    while len(buffer) >= HEADER.size:
        kind, stream, length = HEADER.unpack_from(buffer)
        if kind == CREDIT:
            del buffer[:HEADER.size]
            yield kind, stream, length
            continue
        if kind not in (OPEN, DATA, CLOSE) or length > MAX_DATA:
            raise ValueError(f"bad stream frame (kind {kind}, length {length})")
        if len(buffer) < HEADER.size + length:
            return
        payload = bytes(buffer[HEADER.size:HEADER.size + length])
        del buffer[:HEADER.size + length]
        yield kind, stream, payload
