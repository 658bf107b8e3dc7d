"""Connect RPC over HTTP for the envd services: reading requests, writing unary and streamed answers.

JSON codec only (every E2B SDK uses it). A request is plain JSON
(``application/json``) or one or more envelopes (``application/connect+json``);
a streamed answer is envelopes flushed as produced and always ends with the
end-of-stream envelope, carrying the error if the call failed midway.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from corral.errors import CorralError
from corral.server.e2b import envelope
from corral.server.e2b.errors import E2BError, connect_code, status_and_message

#: The exact content type of a streamed answer (the SDK compares it literally).
STREAM_TYPE = "application/connect+json"
#: Largest unary request body.
MAX_UNARY_BYTES = envelope.MAX_PAYLOAD_BYTES


def enveloped(request: Request) -> bool:
    """True when the request body is Connect envelopes (a streaming call)."""
    return request.headers.get("content-type", "").split(";")[0].strip().startswith("application/connect+")


async def read_message(request: Request) -> dict:
    """The request's one message (E2BError invalid_argument if malformed or over the limit)."""
    if not enveloped(request):
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_UNARY_BYTES:
                raise E2BError(400, f"request body is over {MAX_UNARY_BYTES} bytes", "resource_exhausted")
        try:
            return envelope.decode_message(bytes(raw))
        except envelope.EnvelopeError as exc:
            raise E2BError(400, str(exc), "invalid_argument") from None
    async for message in read_envelopes(request):
        return message
    raise E2BError(400, "the request held no message envelope", "invalid_argument")


async def read_envelopes(request: Request) -> AsyncIterator[dict]:
    """Message envelopes of the request body as they arrive (stops at the end-of-stream envelope)."""
    reader = envelope.EnvelopeReader()
    try:
        async for chunk in request.stream():
            for item in reader.feed(chunk):
                if item.end:
                    return
                yield item.message
        reader.finish()
    except envelope.EnvelopeError as exc:
        raise E2BError(400, str(exc), "invalid_argument") from None


def stream(messages: AsyncIterator[dict]) -> StreamingResponse:
    """A streamed answer: each message an envelope, then the end envelope (with the error, if any)."""
    async def frames() -> AsyncIterator[bytes]:
        end: dict = {}
        try:
            async for message in messages:
                yield envelope.encode(message)
        except (CorralError, E2BError) as exc:
            status, text, code = status_and_message(exc)
            end = {"error": {"code": connect_code(status, code), "message": text}}
        finally:
            await messages.aclose()
        yield envelope.encode(end, end=True)

    return StreamingResponse(frames(), media_type=STREAM_TYPE)


def field(message: dict, camel: str, default=None):
    """A field by its JSON (lowerCamelCase) or proto (snake_case) name."""
    if camel in message:
        return message[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return message.get(snake, default)


def need(value, kind: type | tuple[type, ...], what: str):
    """``value`` if it has type ``kind``, else E2BError invalid_argument."""
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise E2BError(400, f"{what}: expected {getattr(kind, '__name__', 'a value')}", "invalid_argument")
    return value


def unbase64(value, what: str) -> bytes:
    """Bytes of a proto3 JSON ``bytes`` field (standard or URL-safe base64, padded or not)."""
    if not isinstance(value, str):
        raise E2BError(400, f"{what}: expected base64 text", "invalid_argument")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise E2BError(400, f"{what}: not base64", "invalid_argument") from None


def b64(data: bytes) -> str:
    """Standard padded base64 of ``data``."""
    return base64.b64encode(data).decode()


def timeout_s(request: Request) -> float | None:
    """The call's deadline from ``connect-timeout-ms`` in seconds (None when absent)."""
    raw = request.headers.get("connect-timeout-ms")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise E2BError(400, "connect-timeout-ms must be a number of milliseconds", "invalid_argument")
    return int(raw) / 1000 or None


def user_of(request: Request) -> None:
    """Refuse a Linux user other than the sandbox's one (E2B's ``user=``, sent as Basic auth)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return
    try:
        user = base64.b64decode(header[6:]).decode().partition(":")[0]
    except (binascii.Error, ValueError):
        raise E2BError(400, "Authorization: Basic must hold base64 of '<user>:'", "invalid_argument") from None
    if user not in ("", "user"):
        raise E2BError(403, f"corral sandboxes have one user ('user', home /home/user), not {user!r}",
                       "permission_denied")

