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


# --- every sync class against its async twin, discovered -------------------------------------------------

import importlib  # noqa: E402

from corral import oneshot, public, sync  # noqa: E402
from corral.batch.many import arun_many  # noqa: E402
from corral.client import handle as hosted_handle, sync as hosted_sync  # noqa: E402
from corral.pool import AsyncPool  # noqa: E402

#: Modules whose classes are sync twins; a class defined in one must be listed in TWINS.
SYNC_MODULES = ["corral.sync", "corral.sync_commands", "corral.sync_files", "corral.client.sync", "corral.public"]
CLUSTER_MODULE = "corral.cluster.sync"

TWINS: dict[str, list[tuple[str, str]]] = {
    "corral.sync.Sandbox": [("corral.sandbox", "AsyncSandbox")],
    "corral.sync.Pool": [("corral.pool", "AsyncPool")],
    "corral.sync.Terminal": [("corral.terminal", "AsyncTerminal")],
    "corral.sync_files.Files": [("corral.sandbox", "AsyncFiles"), ("corral.client.handle", "AsyncHostedFiles")],
    "corral.sync_files.FileWatch": [("corral.file_watch", "AsyncFileWatch")],
    "corral.sync_files.BasicFiles": [("corral.cluster.session", "ClusterFiles")],
    "corral.sync_commands.Commands": [("corral.commands", "AsyncCommands")],
    "corral.sync_commands.CommandHandle": [("corral.commands", "AsyncCommandHandle")],
    "corral.client.sync.HostedSandbox": [("corral.client.handle", "AsyncHostedSandbox")],
    "corral.client.sync.HostedTerminal": [("corral.client.terminal", "AsyncHostedTerminal")],
    "corral.client.sync.HostedCommands": [("corral.client.handle", "AsyncHostedCommands")],
    "corral.public.Sandbox": [("corral.public", "AsyncSandbox")],
    "corral.cluster.sync.Pool": [("corral.cluster.pool", "AsyncPool")],
    "corral.cluster.sync.Sandbox": [("corral.cluster.session", "AsyncClusterSandbox")],
    "corral.cluster.sync._Commands": [("corral.cluster.session", "ClusterCommands")],
}
#: Classes of SYNC_MODULES that are no sync twins: the async public class (public.Sandbox's twin).
NOT_TWINS = {"corral.public.AsyncSandbox"}
#: Public names of an async class the sync one does not mirror, and why.
ASYNC_ONLY = {
    "detach": "a pool's way to take a sandbox back (engine)",
    "lease": "what AsyncSandbox(pool=...) takes from the pool (engine)",
    "stop_now": "stops a pool whose loop is gone (engine)",
    "open": "the factory AsyncSandbox.terminal() calls",
    "start@AsyncFileWatch": "the factory AsyncFiles.watch() calls",
    "ready_host": "the cluster server's way to its node (engine)",
    "watch@AsyncHostedFiles": "hosted sandboxes have no file watches (a local sandbox's Files has it)",
    "run_options@AsyncSandbox": "a building block of pools, batches and the hosted service (engine)",
    "events@AsyncSandbox": "a building block of pools, batches and the hosted service (engine)",
    "execute@AsyncSandbox": "a building block of pools, batches and the hosted service (engine)",
    "channel@AsyncSandbox": "the agent's channel, for what is built on a sandbox (engine)",
    "run_env@AsyncSandbox": "a building block of commands and the hosted service (engine)",
    "retire@AsyncPool": "how a pool's own sandboxes hand a lease back (engine)",
    "serving@AsyncPool": "the shared default pools' idle reaper reads it (engine)",
    "host@AsyncClusterSandbox": "the served cluster sandbox's way to its node (engine)",
    "hosts@AsyncClusterSandbox": "the served cluster sandbox's way to the cluster (engine)",
}
#: Async-side dunders and the sync ones that mirror them.
PROTOCOLS = {"__aenter__": "__enter__", "__aexit__": "__exit__", "__aiter__": "__iter__"}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _classes(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    return [value for value in vars(module).values()
            if inspect.isclass(value) and value.__module__ == module_name]


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _signature(cls: type, name: str) -> list[tuple[str, object, object]]:
    """A method's parameters (names, kinds, defaults) without self/cls."""
    static = inspect.getattr_static(cls, name)
    parameters = _parameters(getattr(cls, name))
    return parameters if isinstance(static, (staticmethod, classmethod)) else parameters[1:]


def _twin_modules() -> list[str]:
    ray = pytest.importorskip("ray", reason="corral.cluster needs ray (the [ray] extra)")
    assert ray
    return [*SYNC_MODULES, CLUSTER_MODULE]


def test_every_sync_class_has_its_async_twin_listed():
    found = {_qualified(cls) for module in _twin_modules() for cls in _classes(module)}
    assert found - NOT_TWINS == set(TWINS), "a sync class was added or removed: list its async twin in TWINS"


@pytest.mark.parametrize("sync_name", sorted(TWINS))
def test_sync_twin_mirrors_every_public_method(sync_name):
    _twin_modules()
    module_name, _, class_name = sync_name.rpartition(".")
    sync_class = getattr(importlib.import_module(module_name), class_name)
    for async_module, async_name in TWINS[sync_name]:
        async_class = getattr(importlib.import_module(async_module), async_name)
        skipped = {name for name in _public(async_class)
                   if name in ASYNC_ONLY or f"{name}@{async_name}" in ASYNC_ONLY}
        if async_name == "AsyncHostedFiles":  # Files serves both; the hosted one has fewer methods
            skipped |= _public(sync_class) - _public(async_class)
        missing = _public(async_class) - skipped - _public(sync_class)
        assert not missing, f"{sync_name} lacks {sorted(missing)} of {async_name}"
        for name in sorted(_public(sync_class) - skipped):
            static = inspect.getattr_static(sync_class, name)
            if isinstance(static, property):
                # a property mirrors an async property or an attribute the async class sets
                async_static = inspect.getattr_static(async_class, name, None)
                assert async_static is None or isinstance(async_static, property), f"{sync_name}.{name}"
                continue
            assert name in _public(async_class), f"{sync_name}.{name} has no async twin in {async_name}"
            assert _signature(sync_class, name) == _signature(async_class, name), f"{sync_name}.{name}"
        for async_dunder, sync_dunder in PROTOCOLS.items():
            if async_dunder in vars(async_class) or any(async_dunder in vars(base) for base in async_class.__mro__[1:-1]):
                assert hasattr(sync_class, sync_dunder), f"{sync_name} lacks {sync_dunder} ({async_name} has {async_dunder})"


def test_sandbox_and_pool_constructors_take_the_async_parameters():
    assert _parameters(sync.Sandbox.__init__) == _parameters(AsyncSandbox.__init__)
    assert _parameters(sync.Pool.__init__) == _parameters(AsyncPool.__init__)
    assert _parameters(public.Sandbox.__init__) == _parameters(public.AsyncSandbox.__init__)
    _twin_modules()
    cluster_sync, cluster_pool = (importlib.import_module(name) for name in (CLUSTER_MODULE, "corral.cluster.pool"))
    assert _parameters(cluster_sync.Pool.__init__) == _parameters(cluster_pool.AsyncPool.__init__)


def test_run_functions_take_the_async_parameters():
    assert _parameters(sync.run) == _parameters(oneshot.arun)
    assert _parameters(sync.run_many) == _parameters(arun_many)


def test_no_sync_twin_passes_options_through():
    """Signatures are spelled out: no ``**options`` that would hide a parameter from this test."""
    for module in _twin_modules():
        for cls in _classes(module):
            for name, member in vars(cls).items():
                function = getattr(member, "__func__", member)
                if inspect.isfunction(function):
                    kinds = {p.kind for p in inspect.signature(function).parameters.values()}
                    assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{_qualified(cls)}.{name}"
    for function in (sync.run, sync.run_many):
        assert inspect.Parameter.VAR_KEYWORD not in {p.kind for p in inspect.signature(function).parameters.values()}


def test_public_classes_are_the_engine_plus_the_hosted_entry_points():
    assert issubclass(public.AsyncSandbox, AsyncSandbox) and issubclass(public.Sandbox, sync.Sandbox)
    for name in ("create", "connect", "list", "resume"):
        assert _signature(public.AsyncSandbox, name) == _signature(hosted_handle.AsyncHostedSandbox, name)
        assert _signature(public.Sandbox, name) == _signature(hosted_sync.HostedSandbox, name)
        assert not hasattr(AsyncSandbox, name) and not hasattr(sync.Sandbox, name)  # the engine has none
