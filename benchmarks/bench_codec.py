"""The host's protocol codec: pydantic's JSON against the agent's stdlib codec, in the same run.

    python benchmarks/bench_codec.py [--runs 15] [--small-runs 5000]

No sandbox: this times only what the host does to a frame. Rows, each with the old
codec (``corral.protocol.wire``, which the agent keeps) and the new one
(``corral.protocol.messages``' pydantic path), and the ratio old/new:

- encode an exec request (the model to its line);
- a 12 MiB file write: base64 of the bytes, the request model, its line (what
  ``files.write`` does before the line reaches the pipe); and the encode alone;
- decode the agent's answer to a 12 MiB read (``file_data``) into its model,
  and an ``exec_done``.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time

from corral.protocol import messages, wire
from corral.protocol.messages import ExecDone, ExecRequest, FileData, FileWriteRequest

FILE_BYTES = 12 * 2**20


def samples(function, runs: int) -> list[float]:
    """Microseconds per call of ``function``, ``runs`` times."""
    taken = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        taken.append((time.perf_counter() - started) * 1e6)
    return taken


def old_encode(request) -> bytes:
    """The host's codec before: the model as plain data, written by the agent's encoder."""
    return wire.encode_frame(request.model_dump(mode="json"))


def old_parse(line: bytes):
    """The host's decoder before: the agent's parser, then validation."""
    frame = wire.decode_frame(line)
    return messages.EVENT_MODELS[frame["type"]].model_validate(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="calls per 12 MiB row")
    parser.add_argument("--small-runs", type=int, default=5000, help="calls per small-message row")
    args = parser.parse_args()

    payload = os.urandom(FILE_BYTES)
    exec_request = ExecRequest(id=7, language="python", code="import math\nprint(math.pi)\n", timeout_ms=30_000,
                               env={"NAME": "value", "LANG": "C.UTF-8"}, cwd="/home/user")
    write_request = FileWriteRequest(id=8, path="/home/user/data.bin", data_b64=base64.b64encode(payload).decode())
    data_line = wire.encode_frame({"type": "file_data", "id": 9, "data_b64": base64.b64encode(payload).decode()})
    done_line = wire.encode_frame(ExecDone(id=7, exit_code=0, spawn_ms=1.25, process_ms=20.5).model_dump(mode="json"))
    assert messages.encode_request(exec_request) == old_encode(exec_request)
    assert messages.encode_request(write_request) == old_encode(write_request)
    assert messages.parse_event(data_line) == old_parse(data_line)

    def file_write(encode):
        return lambda: encode(FileWriteRequest(id=8, path="/home/user/data.bin",
                                               data_b64=base64.b64encode(payload).decode()))

    rows = [
        ("encode an exec request", "us", args.small_runs,
         lambda: old_encode(exec_request), lambda: messages.encode_request(exec_request)),
        ("12 MiB file write (base64, model, line)", "ms", args.runs,
         file_write(old_encode), file_write(messages.encode_request)),
        ("12 MiB file write, encode only", "ms", args.runs,
         lambda: old_encode(write_request), lambda: messages.encode_request(write_request)),
        ("decode a 12 MiB file_data", "ms", args.runs,
         lambda: old_parse(data_line), lambda: messages.parse_event(data_line)),
        ("decode an exec_done", "us", args.small_runs,
         lambda: old_parse(done_line), lambda: messages.parse_event(done_line)),
    ]
    print(f"{'what':42} {'unit':>4} {'stdlib':>10} {'pydantic':>10} {'old/new':>8}")
    for name, unit, runs, old, new in rows:
        scale = 1e-3 if unit == "ms" else 1.0
        old_samples, new_samples = [], []
        for _ in range(3):  # interleaved, so load from elsewhere falls on both
            old_samples += samples(old, max(1, runs // 3))
            new_samples += samples(new, max(1, runs // 3))
        old_median = statistics.median(old_samples) * scale
        new_median = statistics.median(new_samples) * scale
        print(f"{name:42} {unit:>4} {old_median:10.2f} {new_median:10.2f} {old_median / new_median:8.2f}")


if __name__ == "__main__":
    main()
