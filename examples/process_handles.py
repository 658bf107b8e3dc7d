"""Processes with handles, file watches, rich results and a terminal, in one local sandbox.

A background worker reads jobs on its stdin and prints results; a second handle attaches to
it by pid; a directory watch sees the files it writes; a session block returns rich results;
an interactive bash runs on a pseudo-terminal.

Run: python examples/process_handles.py
"""

import corral

WORKER = 'while read n; do echo "square $n = $((n*n))"; echo "$n" > "out/$n.txt"; done; echo "no more jobs" >&2'

with corral.Sandbox() as sandbox:
    sandbox.files.make_dir("out")
    with sandbox.files.watch("out") as watch:
        worker = sandbox.commands.start(WORKER, stdin=True, tag="worker",
                                        on_stdout=lambda text: print("  worker:", text, end=""))
        print(f"1. started pid {worker.pid}; running: {[(p.pid, p.tag) for p in sandbox.commands.list()]}")
        for n in (3, 4, 5):
            worker.send_stdin(f"{n}\n")
        second = sandbox.commands.connect(worker.pid)  # another handle, with what was printed so far
        worker.close_stdin()
        result = worker.wait(timeout=30)
        print(f"2. exit code {result.exit_code}, stderr {result.stderr!r}")
        print(f"3. the second handle saw {second.wait().stdout.count('square')} results too")
        print("4. files the worker wrote:", sorted({event.name for event in watch.pending() if event.kind == "create"}))

    sleeper = sandbox.commands.run("sleep 600", background=True)
    print(f"5. killed the sleeper: {sleeper.kill()}, exit code {sleeper.wait().exit_code}")

    info = sandbox.files.stat("out/3.txt")
    print(f"6. out/3.txt: {info.kind}, {info.size} bytes, mode {oct(info.mode)}")

    sandbox.run("class Table:\n"
                "    def __init__(self, rows): self.rows = rows\n"
                "    def _repr_html_(self):\n"
                "        cells = ''.join(f'<tr><td>{a}</td><td>{b}</td></tr>' for a, b in self.rows)\n"
                "        return '<table>' + cells + '</table>'\n")
    block = sandbox.run("display({'jobs': 3})\nTable([(n, n * n) for n in (3, 4, 5)])")
    for item in block.results:
        print(f"7. {'main' if item.is_main_result else 'display'} result: {item.formats}")
    failed = sandbox.run("int('seven')")
    print(f"8. error as data: {failed.error.name}: {failed.error.value}")

    with sandbox.terminal(cols=60, rows=10) as terminal:
        terminal.write("stty size; echo end-$((1+1))\n")  # the typed line is echoed: wait for the output
        print("9. terminal says:", terminal.read_until("end-2").splitlines()[-2])
        terminal.write("exit 3\n")
        print(f"10. terminal exit code {terminal.wait(timeout=10)}")
