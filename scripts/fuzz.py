"""Long fuzzing runs of the parsers that read untrusted bytes; prints inputs per second and crashes.

    .venv/bin/python scripts/fuzz.py                      # every parser, 1,000,000 inputs each
    .venv/bin/python scripts/fuzz.py --inputs 200000 --seconds 60 wire_frame proxy_request

A mutation fuzzer (no coverage guidance, no dependencies): each input is a seed
from a small corpus of valid and nearly valid inputs, changed by a few random
edits (bit flips, interesting bytes, inserted tokens, deletions, duplications,
splices with another seed); inputs that parse join the corpus. A crash is any
exception other than the parser's documented error, or one input taking longer
than ``--hang`` seconds; each distinct crash (exception type and place) is
printed once with the input that found it. Exit status 1 if anything crashed.
The short runs in CI are tests/unit/test_fuzz_*.py.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.host.proxy_request import BadRequest, parse_head
from corral.protocol import messages, parse_event, streams, wire


def _wire_frame(data: bytes) -> None:
    try:
        message = wire.decode_frame(data)
    except ValueError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str), message


def _agent_event(data: bytes) -> None:
    try:
        event = parse_event(data)
    except ValueError:
        event = None
    try:  # the host's parser (pydantic's JSON) reads what the agent's (the stdlib's) reads, the same way
        expected = wire.decode_frame(data)
    except ValueError:
        assert event is None, event  # and refuses what it refuses
        return
    assert messages.decode_frame(data) == expected, expected


def _stream_frames(data: bytes) -> None:
    buffer = bytearray()
    for start in range(0, len(data), 7):  # seven bytes at a time: every frame arrives split
        buffer += data[start:start + 7]
        try:
            for kind, _, value in streams.split_frames(buffer):
                assert kind == streams.CREDIT or len(value) <= streams.MAX_DATA
        except ValueError:
            return


def _proxy_request(data: bytes) -> None:
    try:
        request = parse_head(data)
    except BadRequest:
        return
    assert 1 <= request.port <= 65535, request


def _frame(kind: int, stream: int, payload: bytes = b"", length: int | None = None) -> bytes:
    return streams.frame(kind, stream, payload, length)


_EVENTS = [
    b'{"type":"hello","protocol":1,"agent_version":"1","pid":1,"capabilities":["exec"]}\n',
    b'{"type":"output","id":3,"stream":"stdout","data":"hi\\n"}\n',
    b'{"type":"exec_done","id":3,"exit_code":0,"timed_out":false,"cpu_time_ms":1.5}\n',
    b'{"type":"error","id":null,"code":"invalid","message":"x"}\n',
    b'{"type":"dir_listing","id":4,"entries":[{"name":"a","kind":"file","size":1,"mode":420}]}\n',
    b'{"type":"file_data","id":5,"data_b64":"aGk=","size":2}\n',
    b'{"type":"ack","id":7}\n',
]

#: name -> (function, its seeds, tokens worth inserting)
PARSERS: dict[str, tuple[Callable[[bytes], None], list[bytes], list[bytes]]] = {
    "wire_frame": (_wire_frame, _EVENTS + [b'{"type":"exec","id":1,"code":"print(1)","env":{"A":"b"}}\n'],
                   [b"{", b"}", b"[", b"]", b'"', b"\\u", b"\\ud800", b"NaN", b"1e999", b"-0", b",", b":", b"\xff",
                    b"\xed\xa0\x80", b'"type"', b"[" * 2000]),
    "agent_event": (_agent_event, _EVENTS, [b'"id":', b'"type":"', b"null", b"true", b"1e308", b"-1", b"[" * 2000,
                                             b'"data":', b"\xc0\x80", b"99999999999999999999999"]),
    "stream_frames": (_stream_frames, [
        _frame(streams.OPEN, 1, b"egress.sock") + _frame(streams.DATA, 1, b"x" * 100) + _frame(streams.CREDIT, 1,
                                                                                               length=5),
        _frame(streams.CLOSE, 2) + _frame(streams.DATA, 2, b"y"),
    ], [b"\x01", b"\x02", b"\x03", b"\x04", b"\x00\x01\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"]),
    "proxy_request": (_proxy_request, [
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        b"GET http://[2001:db8::1]:8080/ HTTP/1.0\r\n\r\n",
    ], [b"[", b"]", b":", b"%", b"\r\n", b"\n", b"\x00", b" ", b"http://", b"::", b"65536", b"\xc3\xa9", b"xn--",
        b"@", b"#", b"?", b"CONNECT "]),
}
_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, ord("\n"), ord("\r"), ord('"'), ord("\\"), ord(":")]
_MAX_INPUT = 4096
_MAX_CORPUS = 2000


@dataclass
class Report:
    """One parser's run."""

    inputs: int = 0
    seconds: float = 0.0
    crashes: dict[str, bytes] = field(default_factory=dict)


def mutate(rng: random.Random, data: bytes, corpus: list[bytes], tokens: list[bytes]) -> bytes:
    """A few random edits of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.randrange(7)
        position = rng.randint(0, len(out))
        if choice == 0 and out:
            out[position % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[position % len(out)] = rng.choice(_INTERESTING)
        elif choice == 2:
            out[position:position] = rng.choice(tokens)
        elif choice == 3:
            del out[position:position + rng.randint(1, 16)]
        elif choice == 4 and out:
            start = rng.randrange(len(out))
            out[position:position] = out[start:start + rng.randint(1, 32)]
        elif choice == 5:
            other = rng.choice(corpus)
            out[position:] = other[rng.randint(0, len(other)):]
        else:
            out[position:position] = rng.randbytes(rng.randint(1, 8))
    return bytes(out[:_MAX_INPUT])


def fuzz(name: str, inputs: int, seconds: float, hang_s: float, rng: random.Random) -> Report:
    """Run one parser on up to ``inputs`` inputs or for ``seconds``, whichever ends first."""
    target, seeds, tokens = PARSERS[name]
    corpus = list(seeds)
    report = Report()
    started = time.perf_counter()
    deadline = started + seconds
    while report.inputs < inputs and (report.inputs % 1000 or time.perf_counter() < deadline):
        data = mutate(rng, rng.choice(corpus), corpus, tokens)
        before = time.perf_counter()
        try:
            target(data)
        except Exception as exc:  # the crashes this script is for
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {frame.filename}:{frame.lineno}"
            if key not in report.crashes:
                report.crashes[key] = data
                print(f"  {name}: CRASH {key}: {exc!r:.200}\n    input: {data[:300]!r}", flush=True)
        else:
            if len(corpus) < _MAX_CORPUS and rng.random() < 0.01:
                corpus.append(data)
        if time.perf_counter() - before > hang_s:
            key = f"hang over {hang_s:g} s"
            if key not in report.crashes:
                report.crashes[key] = data
                print(f"  {name}: HANG on input {data[:300]!r}", flush=True)
        report.inputs += 1
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parsers", nargs="*", choices=[[], *PARSERS], help="which parsers (default: all)")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per parser [1000000]")
    parser.add_argument("--seconds", type=float, default=3600.0, help="time limit per parser [3600]")
    parser.add_argument("--hang", type=float, default=1.0, help="one input taking longer is a hang [1 s]")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed}", flush=True)
    failed = False
    for name in args.parsers or list(PARSERS):
        report = fuzz(name, args.inputs, args.seconds, args.hang, random.Random(f"{seed}:{name}"))
        rate = report.inputs / report.seconds if report.seconds else 0.0
        print(f"{name}: {report.inputs} inputs in {report.seconds:.1f} s ({rate:,.0f}/s), "
              f"{len(report.crashes)} crashes", flush=True)
        failed |= bool(report.crashes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
