"""The agent's file operations: how a path is resolved, and what ``..``, absolute paths and symlinks do.

The agent resolves paths in the sandbox's own mount namespace, where no host path is
writable, so it does not confine paths to the home: ``..`` and absolute paths name other
sandbox files by design. What it does guarantee is checked here on a temporary directory:
relative paths start at the home, ``~`` is not expanded, the root and the home cannot be
removed or moved whatever the spelling, and a symlink is never followed by a write, a remove,
a stat or a listing (a link planted by user code cannot redirect them).
"""

from __future__ import annotations

import base64
import os

import pytest

from corral.agent.files import FileOpError, Files
from corral.protocol import wire


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home" / "user"
    home.mkdir(parents=True)
    return home


@pytest.fixture
def files(home):
    return Files(str(home))


@pytest.mark.parametrize(("path", "expected"), [
    ("notes.txt", "{home}/notes.txt"),
    ("a/b/../c", "{home}/a/c"),
    ("./a//b/", "{home}/a/b"),
    (".", "{home}"),
    ("~/x", "{home}/~/x"),  # no shell expansion: a directory named ~
    ("../other", "{parent}/other"),
    ("../../../../../../../../etc/passwd", "/etc/passwd"),  # .. stops at the root
    ("/etc/../tmp/x", "/tmp/x"),
    ("/", "/"),
])
def test_resolve(files, home, path, expected):
    assert files.resolve(path) == expected.format(home=home, parent=home.parent)


@pytest.mark.parametrize(("path", "message"), [
    ("", "non-empty"),
    (None, "non-empty"),
    (7, "non-empty"),
    ("a\x00b", "NUL"),
    ("a" * (wire.MAX_PATH_BYTES + 1), "longer than"),
])
def test_resolve_refuses_paths_that_name_no_file(files, path, message):
    with pytest.raises(FileOpError, match=message) as caught:
        files.resolve(path)
    assert caught.value.code == "invalid"


@pytest.mark.parametrize("spelling", ["/", ".", "{home}", "{home}/", "../user", "a/..", "/..", "{home}/x/../"])
def test_the_root_and_the_home_cannot_be_removed_or_moved(files, home, spelling):
    path = spelling.format(home=home)
    with pytest.raises(FileOpError, match="refusing") as caught:
        files.remove(path, True)
    assert caught.value.code == "invalid"
    with pytest.raises(FileOpError, match="refusing"):
        files.rename(path, "elsewhere")
    assert home.is_dir()


def test_a_write_through_a_symlink_replaces_the_link_not_its_target(files, home, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (home / "link").symlink_to(outside)
    assert files.write("link", base64.b64encode(b"new").decode(), 0o644) == 3
    assert outside.read_text() == "precious"
    assert not (home / "link").is_symlink() and (home / "link").read_bytes() == b"new"


def test_removing_a_tree_removes_links_in_it_not_what_they_point_to(files, home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (home / "tree" / "sub").mkdir(parents=True)
    (home / "tree" / "sub" / "link").symlink_to(outside)
    (home / "dirlink").symlink_to(outside)
    files.remove("tree", True)
    files.remove("dirlink", False)  # a link to a directory is removed as a link
    assert not (home / "tree").exists() and not (home / "dirlink").is_symlink()
    assert (outside / "keep.txt").read_text() == "keep"


def test_remove_tree_gets_through_directories_user_code_made_unreadable(files, home):
    locked = home / "locked" / "inner"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    os.chmod(locked, 0)
    os.chmod(home / "locked", 0o500)
    files.remove("locked", True)
    assert not (home / "locked").exists()


def test_stat_and_list_describe_a_link_without_following_it(files, home, tmp_path):
    (tmp_path / "target").write_text("12345")
    (home / "link").symlink_to(tmp_path / "target")
    info = files.stat("link")
    assert info["kind"] == "symlink" and info["symlink_target"] == str(tmp_path / "target")
    assert info["path"] == f"{home}/link" and info["name"] == "link"
    assert [(e["name"], e["kind"]) for e in files.list(".")] == [("link", "symlink")]


def test_a_read_follows_a_link_inside_the_sandbox(files, home):
    (home / "real").write_bytes(b"data")
    (home / "alias").symlink_to("real")
    assert base64.b64decode(files.read("alias")) == b"data"


def test_a_write_creates_parents_and_refuses_a_directory(files, home):
    files.write("deep/er/file", base64.b64encode(b"x").decode(), 0o600)
    assert (home / "deep" / "er" / "file").read_bytes() == b"x"
    assert (home / "deep" / "er" / "file").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileOpError) as caught:
        files.write("deep", base64.b64encode(b"x").decode(), 0o644)
    assert caught.value.code == "is_directory"
    assert sorted(os.listdir(home / "deep")) == ["er"]  # no temporary file left behind


@pytest.mark.parametrize(("operation", "code"), [
    (lambda f: f.read("missing"), "not_found"),
    (lambda f: f.read("."), "is_directory"),
    (lambda f: f.list("missing"), "not_found"),
    (lambda f: f.make_dir("d", False) and f.make_dir("d", True), "exists"),
    (lambda f: f.write("x", "!!not base64!!", 0o644), "invalid"),
])
def test_failures_carry_protocol_error_codes(files, operation, code):
    with pytest.raises(FileOpError) as caught:
        operation(files)
    assert caught.value.code == code
