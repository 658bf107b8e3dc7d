"""The remote client retries only where docs/errors.md says a retry is safe (real peers on loopback)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from corral import Sandbox
from corral.client import remote
from corral.errors import InvalidInputError, OutcomeUnknownError, SandboxClosedError, TransientError

pytestmark = pytest.mark.sandbox


class Peer:
    """A TCP server on 127.0.0.1 that reads each request and then answers ``reply`` (None: hangs up)."""

    def __init__(self, reply: bytes | None):
        self.reply = reply
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests += 1
                if self.reply is not None:
                    connection.sendall(self.reply)

    def close(self) -> None:
        self.listener.close()


def _answer(status: int, error_type: str) -> bytes:
    body = json.dumps({"error": {"type": error_type, "message": f"{error_type} from the peer", "code": None}})
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}").encode()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF_S", 0.01)


@pytest.fixture
def peer(request):
    server = Peer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("peer", [None], indirect=True)
def test_a_broken_post_is_outcome_unknown_and_not_retried(peer):
    with pytest.raises(OutcomeUnknownError):
        Sandbox.create(server=peer.url, api_key="ck_a_b")
    assert peer.requests == 1


@pytest.mark.parametrize("peer", [None], indirect=True)
def test_a_broken_get_is_retried_then_transient(peer):
    with pytest.raises(TransientError):
        Sandbox.connect("sbx_x", server=peer.url, api_key="ck_a_b")
    assert peer.requests == remote.ATTEMPTS


@pytest.mark.parametrize("peer", [_answer(503, "SandboxStartError")], indirect=True)
def test_a_transient_answer_is_retried_even_for_a_post(peer):
    with pytest.raises(TransientError, match="from the peer"):
        Sandbox.create(server=peer.url, api_key="ck_a_b")
    assert peer.requests == remote.ATTEMPTS


@pytest.mark.parametrize("peer", [_answer(409, "SandboxClosedError")], indirect=True)
def test_other_errors_are_raised_at_once_as_their_class(peer):
    with pytest.raises(SandboxClosedError, match="from the peer"):
        Sandbox.create(server=peer.url, api_key="ck_a_b")
    assert peer.requests == 1


def test_unreachable_server_is_transient_and_bad_arguments_are_invalid(monkeypatch):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(TransientError, match="cannot reach"):
        Sandbox.list(server=f"http://127.0.0.1:{port}", api_key="ck_a_b")
    with pytest.raises(InvalidInputError, match="http"):
        Sandbox.list(server="ftp://x", api_key="ck_a_b")
    monkeypatch.delenv("CORRAL_API_KEY", raising=False)
    with pytest.raises(InvalidInputError, match="CORRAL_API_KEY"):
        Sandbox.list(server="http://127.0.0.1:1")
    with pytest.raises(InvalidInputError, match="server="):
        Sandbox.list(api_key="ck_a_b")
