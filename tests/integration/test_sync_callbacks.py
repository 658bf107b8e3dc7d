"""One rule for the sync API's callbacks: a blocking call runs them in the calling thread, before it returns;
only a background command's (its handle outlives the call) run on corral's loop thread."""

from __future__ import annotations

import os
import threading
import warnings

import pytest

import corral

pytestmark = [pytest.mark.sandbox, pytest.mark.levels("process")]


class Seen:
    """A callback that records each chunk with the thread that received it."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, int]] = []

    def __call__(self, text: str) -> None:
        self.chunks.append((text, threading.get_ident()))

    def text(self) -> str:
        return "".join(text for text, _ in self.chunks)

    def threads(self) -> set[int]:
        return {thread for _, thread in self.chunks}


def test_every_blocking_sync_call_runs_callbacks_in_the_calling_thread(tmp_path, monkeypatch):
    here = {threading.get_ident()}
    calls = {}
    with corral.Sandbox() as sandbox:
        calls["Sandbox.run"] = (seen := Seen()), sandbox.run("print('a'); print('b')", on_stdout=seen)
        calls["commands.run"] = (seen := Seen()), sandbox.commands.run("echo c >&2", on_stderr=seen)
    with corral.Pool(size=1) as pool:
        calls["Pool.run"] = (seen := Seen()), pool.run("print('d')", on_stdout=seen)
    calls["run"] = (seen := Seen()), corral.run("print('e')", on_stdout=seen)
    calls["run(fresh=True)"] = (seen := Seen()), corral.run("print('f')", fresh=True, on_stdout=seen)
    monkeypatch.setenv("CORRAL_LOCAL_DIR", str(tmp_path / "local"))
    hosted = corral.Sandbox.create(ttl=120)
    try:
        calls["HostedSandbox.run"] = (seen := Seen()), hosted.run("print('g')", on_stdout=seen)
        calls["HostedCommands.run"] = (seen := Seen()), hosted.commands.run("echo h", on_stdout=seen)
    finally:
        hosted.kill()
    for name, (seen, result) in calls.items():
        assert seen.text() == (result.stdout or result.stderr) and seen.text(), name
        assert seen.threads() == here, f"{name} ran its callback on another thread"


def test_a_callback_may_call_the_sync_api():
    """On the caller's thread a callback is free to use corral (on the loop thread that was refused)."""
    with corral.Sandbox() as sandbox:
        sandbox.run("print('one'); print('two')", on_stdout=lambda text: sandbox.files.write("log.txt", text))
        assert sandbox.files.read_text("log.txt") in ("two\n", "one\ntwo\n")


def test_a_failing_callback_ends_the_call_with_its_error_and_the_sandbox_stays_usable():
    def explode(text: str) -> None:
        raise RuntimeError("callback failed")

    with corral.Sandbox() as sandbox:
        with pytest.raises(RuntimeError, match="callback failed"):
            sandbox.run("import time\nprint('x', flush=True)\ntime.sleep(30)", on_stdout=explode, timeout=60)
        assert sandbox.run("print(6 * 7)").stdout == "42\n"


def test_background_callbacks_run_on_the_loop_thread():
    seen = Seen()
    with corral.Sandbox() as sandbox:
        handle = sandbox.commands.start("echo later", on_stdout=seen)
        assert handle.wait(timeout=20).stdout == "later\n"
    assert seen.text() == "later\n"
    loop_thread = next(thread for thread in threading.enumerate() if thread.name == "corral-loop")
    assert seen.threads() == {loop_thread.ident}


def test_a_forked_child_runs_code_and_leaves_the_parents_shared_sandbox_alone():
    assert corral.run("print(1)").stdout == "1\n"  # the parent's shared warm sandbox now runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork of a process with threads
        pid = os.fork()
    if pid == 0:
        try:
            ok = corral.run("print(2)", timeout=30).stdout == "2\n"
        except BaseException:
            ok = False
        try:
            corral.oneshot._stop_leftover_sandboxes()  # what the child's exit runs: must not touch the parent's
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "corral.run in the forked child failed"
    again = corral.run("print(3)")
    assert again.stdout == "3\n" and again.warm_pool_hit, "the parent's shared sandbox did not survive the child"
