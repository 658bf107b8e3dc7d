"""Package specifiers and the install command."""

from __future__ import annotations

import pytest

from corral.errors import InvalidInputError
from corral.packages import check_index, check_packages, index_hosts, install_command


@pytest.mark.parametrize("spec", ["requests==2.32.3", "Flask_Cors==4.0.1", "uvicorn[standard]==0.30.0", "a==1"])
def test_pinned_pip_specifiers(spec):
    assert check_packages([spec], "python") == [spec]


@pytest.mark.parametrize("spec", ["left-pad@1.3.0", "@types/node@20.1.0", "lodash@4.17.21"])
def test_pinned_npm_specifiers(spec):
    assert check_packages([spec], "javascript") == [spec]


@pytest.mark.parametrize("spec", ["requests", "requests>=2", "requests==2.0;rm -rf /", "-e .", "/abs/path==1",
                                  "requests==1 ", "x==1 --pre", "http://x/y.whl", "a b==1", ""])
def test_unsafe_pip_specifiers(spec):
    with pytest.raises(InvalidInputError, match="pinned"):
        check_packages([spec], "python")


def test_lists_languages_and_indexes():
    with pytest.raises(InvalidInputError):
        check_packages("requests==1.0", "python")
    with pytest.raises(InvalidInputError):
        check_packages([], "python")
    with pytest.raises(InvalidInputError, match="python"):
        check_packages(["x==1"], "shell")
    with pytest.raises(InvalidInputError, match="credentials"):
        check_index("https://user:pw@example.com/simple", "python")
    with pytest.raises(InvalidInputError):
        check_index("file:///etc", "python")
    assert index_hosts("https://pypi.org/simple") == [("pypi.org", 443), ("files.pythonhosted.org", 443)]
    assert index_hosts("http://127.0.0.1:8000/simple/") == [("127.0.0.1", 8000)]
    with pytest.raises(InvalidInputError, match="spaces"):
        check_index("http://127.0.0.1:1/simple x", "python")


@pytest.mark.parametrize("spec", ["left-pad@latest", "left-pad@1", "left-pad@1.x", "left-pad@^1.0.0", "left-pad"])
def test_npm_versions_must_be_exact(spec):
    with pytest.raises(InvalidInputError, match="pinned"):
        check_packages([spec], "javascript")


def test_index_url_cannot_inject_shell():
    command = install_command(["a==1"], "python", "http://127.0.0.1:1/simple;echo${IFS}INJECTED>/home/user/x")
    assert "'http://127.0.0.1:1/simple;echo${IFS}INJECTED>/home/user/x'" in command


def test_install_commands_keep_specifiers_after_the_end_of_options():
    pip = install_command(["a==1"], "python", "http://127.0.0.1:9/simple/")
    assert pip.endswith("-- a==1") and "--trusted-host 127.0.0.1" in pip and "--user" in pip
    npm = install_command(["b@2.0.0"], "javascript", "https://registry.npmjs.org")
    assert npm.endswith("-- b@2.0.0") and "--prefix /home/user" in npm
