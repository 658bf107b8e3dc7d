"""A small subset of the E2B SDK on the microVM level: the same translation, another isolation level."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2b_code_interpreter import Sandbox
from serverprocess import ServerProcess

pytestmark = [pytest.mark.levels("microvm"), pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose sandboxes are microVMs."""
    process = ServerProcess(tmp_path_factory.mktemp("e2b-microvm"), "--isolation", "microvm")
    process.start()
    yield process
    process.stop()


@pytest.mark.timeout(600)
def test_commands_files_and_run_code_on_a_microvm():
    sandbox = Sandbox.create(timeout=600)
    try:
        assert sandbox.commands.run("echo hi").stdout == "hi\n"
        handle = sandbox.commands.run("cat", stdin=True, background=True)
        sandbox.commands.send_stdin(handle.pid, "piped\n")
        sandbox.commands.close_stdin(handle.pid)
        assert handle.wait().stdout == "piped\n"
        sandbox.files.write("a/b.txt", "in a vm")
        assert sandbox.files.read("a/b.txt") == "in a vm" and sandbox.files.get_info("a/b.txt").size == 7
        sandbox.run_code("x = 41")
        assert sandbox.run_code("x + 1").text == "42"
    finally:
        sandbox.kill()
