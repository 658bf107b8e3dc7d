"""A stateful session: state kept between runs, streaming output, files and commands."""

import corral

with corral.Sandbox(language="python", memory_mb=256, timeout=10) as sandbox:
    sandbox.run("import math; radius = 2")
    print(sandbox.run("print(math.pi * radius ** 2)").stdout, end="")
    sandbox.run("for i in range(3): print('tick', i)", on_stdout=lambda text: print("streamed:", text, end=""))
    sandbox.files.write("data/numbers.txt", "\n".join(str(n) for n in range(10)))
    print(sandbox.commands.run("wc -l data/numbers.txt").stdout, end="")
    print(sandbox.files.list("data"))
    result = sandbox.run("while True: pass", timeout=1)
    print("timed out:", result.timed_out, "state reset:", result.session_reset)
