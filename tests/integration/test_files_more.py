"""files.stat / exists / make_dir / rename / watch on every level."""

from __future__ import annotations

import hashlib
import time

import pytest

import corral

pytestmark = pytest.mark.sandbox


def _events_until(watch, wanted, seconds=10.0):
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.extend((event.kind, event.name) for event in watch.pending())
        if wanted <= set(seen):
            return seen
        time.sleep(0.05)
    return seen


def test_stat_exists_make_dir_rename_and_watch(isolation_level):
    with corral.Sandbox() as sandbox:
        sandbox.files.write("data/a.txt", "hello", mode=0o600)
        info = sandbox.files.stat("data/a.txt")
        assert (info.kind, info.size, info.mode, info.path, info.name) == ("file", 5, 0o600, "/home/user/data/a.txt",
                                                                         "a.txt")
        assert info.mtime > 0 and info.symlink_target is None
        assert sandbox.files.exists("data") and not sandbox.files.exists("nothing/here")
        made = sandbox.files.make_dir("x/y/z", parents=True)
        assert made.kind == "dir" and made.path == "/home/user/x/y/z"
        moved = sandbox.files.rename("data/a.txt", "x/b.txt")
        assert moved.path == "/home/user/x/b.txt" and not sandbox.files.exists("data/a.txt")
        with sandbox.files.watch("x", recursive=True) as watch:
            sandbox.commands.run("echo 1 > x/new.txt; mkdir x/sub; echo 2 > x/sub/deep; chmod 700 x/b.txt; "
                                 "mv x/new.txt x/moved.txt; rm x/sub/deep")
            wanted = {("create", "new.txt"), ("write", "new.txt"), ("create", "sub"), ("create", "sub/deep"),
                      ("chmod", "b.txt"), ("rename", "new.txt"), ("create", "moved.txt"), ("remove", "sub/deep")}
            seen = _events_until(watch, wanted)
            assert wanted <= set(seen), seen
        with sandbox.files.watch("x", recursive=True) as watch:  # a tree moved in whole: inotify saw none of it made
            sandbox.commands.run("mkdir -p outside/t/u && touch outside/t/f outside/t/u/g && mv outside/t x/t")
            wanted = {("create", "t"), ("create", "t/f"), ("create", "t/u"), ("create", "t/u/g")}
            seen = _events_until(watch, wanted)
            assert wanted <= set(seen), seen


@pytest.mark.levels("process")
def test_errors_symlinks_and_non_recursive_watch():
    with corral.Sandbox() as sandbox:
        sandbox.commands.run("ln -s /etc/passwd link; ln -s nowhere dangling; mkdir d; mkdir -p deep/er")
        link = sandbox.files.stat("link")
        assert (link.kind, link.symlink_target) == ("symlink", "/etc/passwd")
        assert sandbox.files.exists("dangling")
        with pytest.raises(corral.FileOperationError) as missing:
            sandbox.files.stat("missing")
        assert missing.value.code == "not_found"
        with pytest.raises(corral.FileOperationError) as taken:
            sandbox.files.make_dir("d")
        assert taken.value.code == "exists"
        with pytest.raises(corral.FileOperationError) as orphan:
            sandbox.files.make_dir("no/parent")
        assert orphan.value.code == "not_found"
        with pytest.raises(corral.InvalidInputError, match="cross-device"):
            sandbox.files.rename("d", "/tmp/d")  # another file system
        with pytest.raises(corral.InvalidInputError):
            sandbox.files.rename(".", "elsewhere")
        with pytest.raises(corral.FileOperationError) as not_dir:
            sandbox.files.watch("link")
        assert not_dir.value.code in ("not_directory", "permission", "not_found")
        with sandbox.files.watch("deep") as watch:
            sandbox.commands.run("touch deep/er/inner; touch deep/top")
            seen = _events_until(watch, {("create", "top")})
            assert ("create", "top") in seen and all(not name.startswith("er/") for _, name in seen)


@pytest.mark.levels("process")
async def test_async_watch_iterates_and_ends_when_the_directory_goes():
    async with corral.AsyncSandbox() as sandbox:
        await sandbox.files.make_dir("w")
        watch = await sandbox.files.watch("w")
        await sandbox.files.write("w/f", "1")
        await sandbox.files.remove("w", recursive=True)
        kinds = [event.kind async for event in watch]  # ends by itself: the watched directory is gone
        assert "create" in kinds and "remove" in kinds
        await watch.close()


def test_a_tree_deeper_than_the_watch_limit_is_an_overflow_not_a_crash(isolation_level):
    """A recursive watch over a tree made deeper than Python's recursion limit at once: the agent keeps serving."""
    with corral.Sandbox() as sandbox:
        with sandbox.files.watch(".", recursive=True) as watch:
            made = sandbox.commands.run("mkdir -p outside/$(printf 'a/%.0s' $(seq 1100)) && mv outside/a deep")
            assert made.ok, made
            seen = _events_until(watch, {("overflow", "")})
            assert ("overflow", "") in seen, seen[-5:]
        assert sandbox.run("print(6 * 7)").stdout == "42\n"


def test_big_binary_files_and_names_that_are_not_utf8_cross_both_codecs(isolation_level):
    """The host writes frames with pydantic's JSON and reads them with it; the agent with the stdlib's.

    A 12 MiB file of every byte value (1 MiB in a microVM) travels both ways; a file name that is not UTF-8 travels
    in surrogateescape form (the frames the host's codec hands to the stdlib one).
    """
    # under TCG a guest takes minutes for 12 MiB (its agent's request buffer grows by copying, quadratic)
    size = 12 * 2**20 if isolation_level == "process" else 2**20
    payload = bytes(range(256)) * (size // 256)
    with corral.Sandbox() as sandbox:
        assert sandbox.files.write("big.bin", payload) == len(payload)
        assert sandbox.commands.run("sha256sum big.bin").stdout.split()[0] == hashlib.sha256(payload).hexdigest()
        assert sandbox.files.read("big.bin") == payload
        sandbox.commands.run("printf 'odd name' > $'caf\\xe9.txt'")
        assert "caf\udce9.txt" in {entry.name for entry in sandbox.files.list(".")}
        assert sandbox.files.read("caf\udce9.txt") == b"odd name"
        sandbox.files.write("caf\udce9.txt", b"written back")
        assert sandbox.commands.run("cat $'caf\\xe9.txt'").stdout == "written back"
