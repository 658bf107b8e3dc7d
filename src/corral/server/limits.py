"""Request-size and concurrent-stream limits of the HTTP server.

:class:`BodyLimit` is ASGI middleware: a declared or actual body over the
limit gets a 413 before the route reads it all (file uploads have a limit of
their own, as they are streamed into the sandbox, never held whole). :class:`StreamSlots` counts
streamed responses (NDJSON runs, file downloads); a request past the limit
gets a 429 instead of a slot.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

from corral.contract.errors import error_for_status
from corral.contract.schemas import ErrorBody, ErrorDetail
from corral.server.json_answers import encode_json


def error_bytes(type_name: str, message: str) -> bytes:
    """An ErrorBody as JSON bytes."""
    return ErrorBody(error=ErrorDetail(type=type_name, message=message)).model_dump_json().encode()


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` (``upload_bytes`` for file uploads) with 413."""

    def __init__(self, app, max_bytes: int, upload_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = (scope["method"] == "PUT" and scope["path"].endswith("/files")
                  or scope["method"] == "POST" and scope["path"] == "/files")  # E2B's upload
        limit = self.upload_bytes if upload else self.max_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await self._refuse(send, 400, "Content-Length is not a number")
            if int(declared) > limit:
                return await self._refuse(send, 413, self._message(int(declared), limit))
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # raised where the route reads the body: answered as a 413
                    raise HTTPException(413, self._message(seen, limit))
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    def _message(size: int, limit: int) -> str:
        return f"request body of {size} bytes or more is over the limit of {limit} bytes"

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        body = error_bytes(error_for_status(status).__name__, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class StreamSlots:
    """At most ``limit`` streamed responses at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.in_use -= 1


def ndjson(value: object) -> bytes:
    """One NDJSON line."""
    return encode_json(value) + b"\n"
