"""A command's output as it comes (commands.stream) and a program on a terminal, in one local sandbox.

A slow build prints its steps; ``commands.stream`` hands each line over as it is printed and
then the result. An async sandbox streams a command too, gives up after its first line (which
kills it), and drives ``python3`` on a pseudo-terminal like a user at a keyboard.

Run: python examples/streaming_and_terminal.py
"""

import asyncio
import time

import corral

BUILD = "for step in fetch compile link; do echo \"$step...\"; sleep 0.3; done; echo 'warning: 1' >&2; exit 0"

with corral.Sandbox() as sandbox:
    started = time.monotonic()
    for item in sandbox.commands.stream(BUILD):
        if isinstance(item, corral.OutputEvent):
            print(f"  [{time.monotonic() - started:4.1f} s] {item.stream}: {item.data.strip()}")
        else:
            print(f"1. the build ended: exit code {item.exit_code}, {len(item.stdout.splitlines())} lines")


async def main() -> None:
    async with corral.AsyncSandbox() as sandbox:
        events = sandbox.commands.stream("echo ready; sleep 600")
        first = await anext(events)
        await events.aclose()  # closing the stream early kills the command
        print(f"2. first line {first.data.strip()!r}, then closed; still running: "
              f"{'sleep 600' in (await sandbox.commands.run('ps -eo args')).stdout}")
        async with await sandbox.terminal(command="python3 -q", cols=100, rows=30) as terminal:
            await terminal.read_until(">>> ")
            await terminal.write("print(6 * 7)\n")
            print("3. the terminal answered:", (await terminal.read_until("42")).splitlines()[-1].strip())
            await terminal.write("exit()\n")
            print("4. python3 exited with", await terminal.wait(timeout=20))


asyncio.run(main())
