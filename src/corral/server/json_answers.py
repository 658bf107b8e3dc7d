"""JSON answers that are always valid UTF-8, whatever strings a sandbox produced.

A string from a sandbox can hold lone surrogates (a file name that is not
UTF-8, decoded with surrogateescape, or a hostile agent's frame); UTF-8 cannot
encode them, so an answer holding one would fail as a 500. Here they become
U+FFFD (the replacement character) instead. Requests never carry them: see
:class:`corral.contract.schemas.RequestModel`.
"""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

from corral.contract.schemas import SURROGATE


def encode_json(value: object) -> bytes:
    """``value`` as compact UTF-8 JSON, lone surrogates replaced by U+FFFD."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE.sub("\ufffd", text).encode("utf-8")


class UnicodeSafeJSON(JSONResponse):
    """The server's JSON answer class (see the module docstring)."""

    def render(self, content: object) -> bytes:
        return encode_json(content)
