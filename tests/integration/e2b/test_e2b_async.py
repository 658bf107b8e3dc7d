"""The unmodified ``e2b`` SDK's async API against ``corral serve``."""

from __future__ import annotations

import asyncio

import pytest
from e2b import AsyncSandbox, CommandExitException, NotFoundException, SandboxQuery
from e2b.sandbox.commands.command_handle import PtySize


async def test_async_sandbox_lifecycle_commands_files():
    sandbox = await AsyncSandbox.create(timeout=120, metadata={"suite": "async"}, envs={"GREETING": "hi"})
    try:
        assert (await sandbox.commands.run("echo $GREETING")).stdout == "hi\n"
        chunks = []
        await sandbox.commands.run("echo a; echo b", on_stdout=chunks.append)
        assert "".join(chunks) == "a\nb\n"
        with pytest.raises(CommandExitException):
            await sandbox.commands.run("exit 2")
        handle = await sandbox.commands.run("sleep 0.3; echo bg", background=True)
        assert (await handle.wait()).stdout == "bg\n"
        sleeper = await sandbox.commands.run("sleep 60", background=True)
        assert sleeper.pid in [process.pid for process in await sandbox.commands.list()]
        assert await sandbox.commands.kill(sleeper.pid) is True
        reader = await sandbox.commands.run("cat", stdin=True, background=True)
        await sandbox.commands.send_stdin(reader.pid, "piped\n")
        await sandbox.commands.close_stdin(reader.pid)
        assert (await reader.wait()).stdout == "piped\n"

        await sandbox.files.write("n/a.txt", "async text")
        assert await sandbox.files.read("n/a.txt") == "async text"
        assert await sandbox.files.exists("n/a.txt") and not await sandbox.files.exists("n/b.txt")
        assert [entry.name for entry in await sandbox.files.list("n")] == ["a.txt"]
        assert await sandbox.files.make_dir("n/sub") is True
        assert (await sandbox.files.rename("n/a.txt", "n/sub/a.txt")).path == "/home/user/n/sub/a.txt"
        with pytest.raises(NotFoundException):
            await sandbox.files.get_info("n/a.txt")
        await sandbox.files.remove("n")
        assert not await sandbox.files.exists("n")

        listed = await AsyncSandbox.list(query=SandboxQuery(metadata={"suite": "async"})).next_items()
        assert [info.sandbox_id for info in listed] == [sandbox.sandbox_id]
        await sandbox.set_timeout(200)
        assert (await sandbox.get_info()).metadata == {"suite": "async"}
    finally:
        assert await sandbox.kill() is True


async def test_async_watch_dir_streams_events():
    sandbox = await AsyncSandbox.create(timeout=60)
    try:
        events = []
        await sandbox.files.make_dir("w")
        watch = await sandbox.files.watch_dir("w", on_event=events.append)
        await sandbox.files.write("w/x.txt", "x")
        for _ in range(50):
            if any(event.name == "x.txt" for event in events):
                break
            await asyncio.sleep(0.1)
        await watch.stop()
        assert any(event.name == "x.txt" for event in events)
    finally:
        await sandbox.kill()


async def test_async_pty_and_pause_connect():
    sandbox = await AsyncSandbox.create(timeout=60)
    try:
        output = []
        terminal = await sandbox.pty.create(PtySize(rows=24, cols=80), on_data=output.append)
        await sandbox.pty.send_stdin(terminal.pid, b"echo pty-$((6*7)); exit\n")
        await terminal.wait()
        assert "pty-42" in b"".join(output).decode()
        await sandbox.files.write("kept.txt", "kept")
        assert await sandbox.pause() is True
        resumed = await AsyncSandbox.connect(sandbox.sandbox_id)
        assert await resumed.files.read("kept.txt") == "kept"
    finally:
        await AsyncSandbox.kill(sandbox.sandbox_id)
