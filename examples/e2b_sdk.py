"""The official E2B SDKs, unmodified, against a corral server.

    corral serve --port 8700 &
    export E2B_API_KEY=ck_...  E2B_API_URL=http://127.0.0.1:8700  E2B_SANDBOX_URL=http://127.0.0.1:8700
    pip install e2b e2b-code-interpreter
    python examples/e2b_sdk.py

See docs/e2b.md for what works and what differs.
"""

from __future__ import annotations

from e2b import CommandExitException, SandboxQuery
from e2b import Sandbox
from e2b_code_interpreter import Sandbox as CodeInterpreter


def main() -> None:
    with CodeInterpreter.create(timeout=300, metadata={"example": "e2b"}) as sandbox:
        sandbox.run_code("import math\nradius = 2")
        execution = sandbox.run_code("print('computing')\nmath.pi * radius ** 2")
        print("area:", execution.text, "| printed:", execution.logs.stdout)
        print("error:", sandbox.run_code("1 / 0").error.name)

        sandbox.files.write("data/numbers.txt", "\n".join(str(n) for n in range(10)))
        print("sum:", sandbox.commands.run("paste -sd+ data/numbers.txt | bc").stdout.strip())
        try:
            sandbox.commands.run("exit 3")
        except CommandExitException as exc:
            print("exit code:", exc.exit_code)

        server = sandbox.commands.run("python3 -m http.server 8000 --bind 127.0.0.1", background=True)
        print("running:", [process.pid for process in sandbox.commands.list()])
        server.kill()

        listed = Sandbox.list(query=SandboxQuery(metadata={"example": "e2b"})).next_items()
        print("listed:", [info.sandbox_id for info in listed])

        sandbox.pause()  # files are captured; connect resumes under the same id
        resumed = CodeInterpreter.connect(sandbox.sandbox_id)
        print("after resume:", resumed.files.read("data/numbers.txt").splitlines()[-1])


if __name__ == "__main__":
    main()
