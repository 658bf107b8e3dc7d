"""A small blocking client for QEMU's machine protocol (QMP) on a Unix socket.

Used for the few control steps of a VM's life (stop, migrate to or from a
file descriptor, continue), each with a deadline. Callers on an event loop
run it in a thread. Asynchronous QMP events are read and dropped.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path


class QmpError(Exception):
    """QEMU refused a command, closed the socket, or did not answer in time."""


class Qmp:
    """One QMP connection, capabilities negotiated."""

    def __init__(self, path: Path, deadline_s: float = 10.0):
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._socket.settimeout(deadline_s)
            self._buffer = b""
            end = time.monotonic() + deadline_s
            while True:
                try:
                    self._socket.connect(str(path))
                    break
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    if time.monotonic() > end:
                        raise QmpError(f"QEMU's control socket did not appear: {exc}") from None
                    time.sleep(0.002)
            self._read_message()  # the greeting
            self.execute("qmp_capabilities")
        except BaseException:
            self._socket.close()
            raise

    def execute(self, command: str, arguments: dict | None = None, fds: list[int] | None = None) -> object:
        """Run ``command``; return its ``return`` value or raise QmpError. ``fds`` ride along (SCM_RIGHTS)."""
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        try:
            if fds:
                socket.send_fds(self._socket, [data], fds)
            else:
                self._socket.sendall(data)
            while True:
                reply = self._read_message()
                if "return" in reply:
                    return reply["return"]
                if "error" in reply:
                    raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        except OSError as exc:
            raise QmpError(f"{command}: {exc}") from None

    def wait_for_migration(self, deadline_s: float) -> None:
        """Poll until the running migration (either direction) completed; raise if it failed."""
        end = time.monotonic() + deadline_s
        while True:
            status = self.execute("query-migrate").get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise QmpError(f"migration {status}")
            if time.monotonic() > end:
                raise QmpError(f"migration did not complete within {deadline_s:.0f} s (status {status})")
            time.sleep(0.002)

    def close(self) -> None:
        """Close the connection (QEMU keeps running)."""
        self._socket.close()

    def _read_message(self) -> dict:
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                message = json.loads(line)
                if "event" not in message:
                    return message
                continue
            chunk = self._socket.recv(65536)
            if not chunk:
                raise QmpError("QEMU closed its control socket")
            self._buffer += chunk
