"""The synchronous API mirrors the async one: same methods, same parameters (names, kinds, defaults)."""

from __future__ import annotations

import inspect

import pytest

from corral.commands import AsyncCommandHandle, AsyncCommands
from corral.file_watch import AsyncFileWatch
from corral.sandbox import AsyncFiles, AsyncSandbox
from corral.sync import FileWatch, Files, Sandbox, Terminal
from corral.sync_commands import CommandHandle, Commands
from corral.terminal import AsyncTerminal


def _parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(("async_class", "sync_class", "methods"), [
    (AsyncCommands, Commands, ["start", "connect", "list", "kill", "send_stdin", "close_stdin", "run", "stream"]),
    (AsyncCommandHandle, CommandHandle, ["wait", "kill", "send_stdin", "close_stdin", "disconnect"]),
    (AsyncFiles, Files, ["write", "read", "read_text", "list", "remove", "stat", "exists", "make_dir", "rename",
                         "watch"]),
    (AsyncFileWatch, FileWatch, ["pending", "close"]),
    (AsyncTerminal, Terminal, ["write", "resize", "read", "read_until", "kill", "wait", "close"]),
    (AsyncSandbox, Sandbox, ["terminal"]),
])
def test_sync_methods_take_the_async_parameters(async_class, sync_class, methods):
    for name in methods:
        assert _parameters(getattr(sync_class, name))[1:] == _parameters(getattr(async_class, name))[1:], name


def test_handle_properties_are_mirrored():
    for name in ("pid", "log_path", "info", "exit_code", "stdout", "stderr"):
        assert isinstance(getattr(CommandHandle, name), property)
    for name in ("info", "exit_code", "stdout", "stderr"):  # pid and log_path are plain attributes there
        assert isinstance(getattr(AsyncCommandHandle, name), property)
    for name in ("exit_code", "signal", "running"):
        assert isinstance(getattr(Terminal, name), property)
    assert isinstance(AsyncTerminal.running, property)  # exit_code and signal are plain attributes there
