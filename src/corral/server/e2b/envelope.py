"""Connect-protocol envelopes: the framing of streamed Connect RPC bodies (pure, no I/O).

An envelope is one flag byte, a 4-byte big-endian length and that many bytes
of JSON. :func:`encode` builds one; :class:`EnvelopeReader` takes bytes as they
arrive and yields whole envelopes, refusing (EnvelopeError) a frame over its
size limit, a compressed frame (never negotiated), unknown flag bits and
payloads that are not one JSON object.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

#: Flag of a plain message envelope.
MESSAGE = 0x00
#: Flag bit of a compressed envelope (identity is the only encoding this server speaks).
COMPRESSED = 0x01
#: Flag bit of the end-of-stream envelope.
END_STREAM = 0x02
#: Largest envelope payload accepted by default: a process's stdin chunk or a request fits easily.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
_HEADER = struct.Struct(">BI")


class EnvelopeError(ValueError):
    """A frame that is malformed, compressed, over the size limit, or not one JSON object."""


@dataclass(frozen=True)
class Envelope:
    """One decoded envelope: its flags and its JSON object."""

    flags: int
    message: dict

    @property
    def end(self) -> bool:
        """True for the end-of-stream envelope."""
        return bool(self.flags & END_STREAM)


def encode(message: dict, *, end: bool = False) -> bytes:
    """One envelope holding ``message`` as compact JSON (``end``: the end-of-stream envelope)."""
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
    return _HEADER.pack(END_STREAM if end else MESSAGE, len(payload)) + payload


class EnvelopeReader:
    """Incremental parser: :meth:`feed` bytes as they come, get back the envelopes completed so far."""

    def __init__(self, max_payload: int = MAX_PAYLOAD_BYTES):
        self.max_payload = max_payload
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Envelope]:
        """Add ``data``; the envelopes it completes, in order (EnvelopeError on a bad frame)."""
        self._buffer += data
        found = []
        while len(self._buffer) >= _HEADER.size:
            flags, length = _HEADER.unpack_from(self._buffer)
            if flags & COMPRESSED:
                raise EnvelopeError("compressed envelopes are not accepted (send connect-content-encoding: identity)")
            if flags & ~END_STREAM:
                raise EnvelopeError(f"unknown envelope flags 0x{flags:02x}")
            if length > self.max_payload:
                raise EnvelopeError(f"envelope of {length} bytes is over the limit of {self.max_payload} bytes")
            if len(self._buffer) < _HEADER.size + length:
                break
            payload = bytes(self._buffer[_HEADER.size:_HEADER.size + length])
            del self._buffer[:_HEADER.size + length]
            found.append(Envelope(flags, decode_message(payload)))
        return found

    @property
    def pending(self) -> int:
        """Bytes of an envelope that is not complete yet."""
        return len(self._buffer)

    def finish(self) -> None:
        """The body ended: EnvelopeError if it stopped inside an envelope."""
        if self._buffer:
            raise EnvelopeError(f"the body ended inside an envelope ({len(self._buffer)} bytes left over)")


def decode_message(payload: bytes) -> dict:
    """A JSON object from bytes (EnvelopeError if it is not valid UTF-8 JSON holding an object)."""
    try:
        message = json.loads(payload.decode("utf-8")) if payload else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError(f"envelope payload is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise EnvelopeError("envelope payload is not a JSON object")
    return message
