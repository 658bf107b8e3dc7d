"""Package installs through the egress proxy, from a package index and a registry served on loopback."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile

import pytest

import corral

pytestmark = pytest.mark.sandbox


def _wheel() -> tuple[str, bytes]:
    name = "corral_demo-1.0.0-py3-none-any.whl"
    files = {
        "corral_demo.py": b"VALUE = 42\n",
        "corral_demo-1.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: corral-demo\nVersion: 1.0.0\n",
        "corral_demo-1.0.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: corral-tests\n"
                                            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("corral_demo-1.0.0.dist-info/RECORD,,")
    files["corral_demo-1.0.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


@pytest.fixture
def package_index(http_server) -> str:
    """A PEP 503 simple index on 127.0.0.1 serving corral-demo 1.0.0."""
    name, wheel = _wheel()
    digest = hashlib.sha256(wheel).hexdigest()
    page = f'<html><body><a href="/files/{name}#sha256={digest}">{name}</a></body></html>'.encode()
    http_server.routes["/simple/corral-demo/"] = (200, {"Content-Type": "text/html"}, page)
    http_server.routes[f"/files/{name}"] = (200, {"Content-Type": "application/octet-stream"}, wheel)
    return f"http://127.0.0.1:{http_server.port}/simple/"


@pytest.fixture
def npm_registry(http_server) -> str:
    """An npm registry on 127.0.0.1 serving corral-demo-js 1.0.0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in {
            "package/package.json": json.dumps({"name": "corral-demo-js", "version": "1.0.0", "main": "index.js"}),
            "package/index.js": "module.exports = { value: 42 };\n",
        }.items():
            info = tarfile.TarInfo(path)
            info.size = len(data.encode())
            archive.addfile(info, io.BytesIO(data.encode()))
    tarball = buffer.getvalue()
    base = f"http://127.0.0.1:{http_server.port}"
    manifest = {
        "name": "corral-demo-js",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {
            "name": "corral-demo-js", "version": "1.0.0", "main": "index.js",
            "dist": {
                "tarball": f"{base}/corral-demo-js/-/corral-demo-js-1.0.0.tgz",
                "shasum": hashlib.sha1(tarball).hexdigest(),
                "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode(),
            },
        }},
    }
    http_server.routes["/corral-demo-js"] = (200, {"Content-Type": "application/json"}, json.dumps(manifest).encode())
    http_server.routes["/corral-demo-js/-/corral-demo-js-1.0.0.tgz"] = (200, {}, tarball)
    return base


def test_pip_install_streams_output_and_makes_the_package_importable(package_index):
    with corral.Sandbox() as sandbox:
        streamed = []
        result = sandbox.install(["corral-demo==1.0.0"], index_url=package_index, on_stdout=streamed.append)
        assert result.exit_code == 0 and "Successfully installed corral-demo-1.0.0" in result.stdout
        assert "".join(streamed) == result.stdout
        assert sandbox.run("import corral_demo; print(corral_demo.VALUE)").stdout == "42\n"
        assert sandbox.commands.run("python3 -c 'import corral_demo; print(corral_demo.VALUE)'").stdout == "42\n"
        # the index was reachable for the install only
        after = sandbox.run(f"import urllib.request\ntry: urllib.request.urlopen({package_index!r}, timeout=5)\n"
                            "except Exception as exc: print('ERR', exc)").stdout
        assert after.startswith("ERR")
        assert any(d.allowed and d.host == "127.0.0.1" for d in sandbox.network_log())


def test_packages_at_creation_and_failed_installs(package_index):
    with corral.Sandbox(packages=["corral-demo==1.0.0"], index_url=package_index) as sandbox:
        assert sandbox.run("import corral_demo; print(corral_demo.VALUE)").stdout == "42\n"
        with pytest.raises(corral.PackageInstallError) as failed:
            sandbox.install(["corral-demo==9.9.9"], index_url=package_index)
        assert failed.value.result.exit_code != 0 and "9.9.9" in str(failed.value)


def test_npm_install_into_a_javascript_sandbox(npm_registry):
    with corral.Sandbox(language="javascript") as sandbox:
        result = sandbox.install(["corral-demo-js@1.0.0"], index_url=npm_registry)
        assert result.exit_code == 0, result.stderr
        assert sandbox.run("console.log(require('corral-demo-js').value)").stdout == "42\n"
        assert sandbox.commands.run("node -e \"console.log(require('corral-demo-js').value)\"").stdout == "42\n"


@pytest.mark.parametrize(
    ("language", "spec"),
    [
        ("python", "requests"),  # unpinned
        ("python", "requests>=2"),
        ("python", "./local/package"),
        ("python", "https://example.com/x-1.0-py3-none-any.whl"),
        ("python", "--index-url=http://evil/simple"),
        ("python", "requests==2.0 --pre"),
        ("javascript", "left-pad"),
        ("javascript", "left-pad@^1.0.0"),
        ("javascript", "git+https://example.com/x.git"),
        ("javascript", "file:../x"),
    ],
)
def test_unpinned_path_url_and_option_specifiers_are_refused(language, spec):
    with pytest.raises(corral.InvalidInputError, match="pinned"):
        corral.Sandbox(language=language, packages=[spec])


def test_a_failed_install_leaves_the_index_unreachable(package_index, http_server):
    with corral.Sandbox() as sandbox:
        sandbox.commands.start("python3 -m http.server 3128 --bind 127.0.0.1")  # squats the relay's port
        sandbox.commands.run("for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/3128) 2>/dev/null && break; "
                             "sleep 0.05; done")
        with pytest.raises(corral.InvalidInputError, match="relay"):
            sandbox.install(["corral-demo==1.0.0"], index_url=package_index)
        probe = sandbox.run(
            "import socket\ns = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    s.connect('/run/corral/egress.sock')\n"
            f"    s.sendall(b'CONNECT 127.0.0.1:{http_server.port} HTTP/1.1\\r\\n\\r\\n')\n"
            "    print(s.recv(200).split(b'\\r\\n')[0])\n"
            "except OSError as exc:\n"
            "    print('ERR', exc)\n"
        ).stdout
        assert "403" in probe or probe.startswith("ERR"), probe
