"""corral.run_many / arun_many and Pool.map against real sandboxes."""

from __future__ import annotations

import pytest

import corral

pytestmark = pytest.mark.sandbox

DOUBLE = "print(int(input()) * 2)"
SUM_CPP = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n"


def test_run_many_gives_every_verdict_and_keeps_going():
    items = [
        {"code": DOUBLE, "tests": [{"stdin": "2\n", "expected": "4\n"}, {"stdin": "3\n", "expected": "7\n"}]},
        {"code": "console.log(6 * 7)", "language": "javascript"},
        {"code": "echo out; echo err >&2; exit 3", "language": "shell"},
        {"code": "x", "language": "cobol"},
        {"code": "while True: pass", "timeout": 0.5, "tests": [{"expected": ""}]},
        {"code": "x = bytearray(400 * 1024 * 1024)", "memory_mb": 128, "tests": [{"expected": ""}]},
        {"code": "print(0.1 + 0.2)", "tests": [{"expected": "0.3"}], "compare": "float"},
        {"code": "print(' 1   2 ')", "tests": [{"expected": "1 2\n"}], "compare": "whitespace"},
    ]
    results = list(corral.run_many(items, concurrency=3))
    by_index = {result.index: result for result in results}
    assert sorted(by_index) == list(range(len(items)))
    assert by_index[0].verdict == "wrong_answer"
    assert [(t.verdict, t.stdout, t.exit_code) for t in by_index[0].tests] == [("accepted", "4\n", 0),
                                                                               ("wrong_answer", "6\n", 0)]
    assert by_index[0].tests[0].time_ms > 0
    assert by_index[1].verdict == "accepted" and by_index[1].result.stdout == "42\n"
    shell = by_index[2]
    assert shell.verdict == "runtime_error" and (shell.result.stdout, shell.result.stderr) == ("out\n", "err\n")
    assert shell.result.exit_code == 3
    assert by_index[3].verdict == "invalid_input" and "language" in by_index[3].error.message
    assert by_index[4].tests[0].verdict == "time_limit_exceeded"
    assert by_index[5].tests[0].verdict == "memory_limit_exceeded"
    assert by_index[6].verdict == "accepted" and by_index[7].verdict == "accepted"


def test_ordered_results_and_files_in_and_out():
    items = [{"code": f"print({n})", "tests": [{"expected": f"{n}\n"}]} for n in range(6)]
    items.insert(2, {"code": "import pathlib; d = pathlib.Path('data'); print(d.joinpath('in.txt').read_text());"
                             "d.joinpath('out.bin').write_bytes(b'\\x00\\xff')",
                     "files": {"data/in.txt": "hello", "raw.bin": b"\x01"}, "fetch_files": ["data/out.bin", "gone"]})
    results = list(corral.run_many(items, concurrency=3, ordered=True))
    assert [result.index for result in results] == list(range(7))
    assert all(result.verdict == "accepted" for result in results)
    assert results[2].result.stdout == "hello\n" and results[2].files == {"data/out.bin": b"\x00\xff"}


def test_cpp_items_compile_once_and_report_compile_errors():
    items = [
        {"code": SUM_CPP, "language": "cpp",
         "tests": [{"stdin": "1 2", "expected": "3\n"}, {"stdin": "40 2", "expected": "42\n"},
                   {"stdin": "1 1", "expected": "3\n"}]},
        {"code": "int main() { return missing; }", "language": "cpp", "tests": [{"expected": ""}]},
        {"code": '#include "helper.h"\n#include <cstdio>\nint main() { std::printf("%d\\n", VALUE); return 4; }',
         "language": "cpp", "files": {"helper.h": "#define VALUE 7\n"}},
        {"code": "int main() { while (true) {} }", "language": "cpp", "timeout": 0.5, "tests": [{"expected": ""}]},
        {"code": SUM_CPP, "language": "cpp", "compile_timeout": 0.05, "tests": [{"expected": ""}]},
    ]
    results = {result.index: result for result in corral.run_many(items, concurrency=2)}
    assert results[0].compile.ok and results[0].verdict == "wrong_answer"
    assert [t.verdict for t in results[0].tests] == ["accepted", "accepted", "wrong_answer"]
    broken = results[1]
    assert broken.verdict == "compile_error" and [t.verdict for t in broken.tests] == ["compile_error"]
    assert "missing" in broken.compile.stderr and broken.compile.exit_code != 0
    assert results[2].verdict == "runtime_error" and results[2].result.stdout == "7\n"
    assert results[2].result.exit_code == 4
    assert results[3].tests[0].verdict == "time_limit_exceeded"
    slow = results[4]
    assert slow.verdict == "compile_error" and slow.compile.timed_out and "did not finish" in slow.compile.stderr


def test_pool_map_uses_the_pool_and_refuses_other_memory():
    with corral.Pool(size=2, memory_mb=192) as pool:
        items = [{"code": DOUBLE, "tests": [{"stdin": str(n), "expected": f"{2 * n}\n"}]} for n in range(4)]
        items.append({"code": "print(1)", "memory_mb": 512})
        results = sorted(pool.map(items), key=lambda result: result.index)
    assert [result.verdict for result in results] == ["accepted"] * 4 + ["invalid_input"]
    assert "memory_mb=512" in results[4].error.message


async def test_arun_many_and_async_pool_map():
    items = ({"code": f"console.log({n} + 1)", "language": "javascript", "tests": [{"expected": f"{n + 1}\n"}]}
             for n in range(3))
    seen = [result.verdict async for result in corral.arun_many(items, concurrency=2)]
    assert seen == ["accepted"] * 3
    async with corral.AsyncPool(size=1) as pool:
        results = [result async for result in pool.map([{"code": "print(2)"}, {"code": "raise SystemExit(2)"}],
                                                       ordered=True)]
    assert [result.verdict for result in results] == ["accepted", "runtime_error"]


def test_a_bad_batch_configuration_raises_before_anything_runs():
    with pytest.raises(corral.InvalidInputError):
        corral.run_many([{"code": "print(1)"}], concurrency=0)
    with pytest.raises(corral.InvalidInputError):
        corral.run_many([{"code": "print(1)"}], memory_mb=1)


def test_more_configurations_than_pools_are_served_one_after_another():
    from corral.batch.many import MAX_POOLS

    sizes = [128 + 16 * n for n in range(MAX_POOLS + 2)]  # more memory sizes than pools at once
    items = [{"code": "import sys; print(sys.argv)", "memory_mb": size, "tests": [{"expected": "['-c']\n"}]}
             for size in sizes]
    results = list(corral.run_many(items, concurrency=2, ordered=True))
    assert [result.verdict for result in results] == ["accepted"] * len(sizes)


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Uid:")).split()[1])


def _sandbox_ancestors(pid: int) -> list[int]:
    """The processes above ``pid`` that run as the same (sandbox) uid: the agent and whatever it forked."""
    ancestors, uid = [], _uid(pid)
    parent = _parent_pid(pid)
    while parent > 1 and _uid(parent) == uid:
        ancestors.append(parent)
        parent = _parent_pid(parent)
    return ancestors


@pytest.mark.levels("process")
def test_a_sandbox_killed_from_outside_is_a_sandbox_error_and_the_batch_goes_on():
    import os
    import signal
    import threading
    import time

    marker = "987.654321"
    killed = threading.Event()
    victims: list[int] = []

    def kill_the_agent() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                            if marker.encode() in cmdline.read() and _uid(int(entry)) != os.getuid():
                                victims.extend(_sandbox_ancestors(int(entry)))  # the agent running the program
                                for pid in victims:
                                    os.kill(pid, signal.SIGKILL)
                                killed.set()
                    except (OSError, ValueError, IndexError):
                        continue
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_agent)
    killer.start()
    items = [{"code": f"exec sleep {marker}", "language": "shell", "timeout": 20},
             {"code": "print(3)", "tests": [{"expected": "3\n"}]}]
    try:
        results = {result.index: result for result in corral.run_many(items, concurrency=2)}
    finally:
        killed.set()
        killer.join()
    assert victims
    assert results[0].verdict == "sandbox_error" and results[0].error.type == "SandboxCrashedError"
    assert results[1].verdict == "accepted"
