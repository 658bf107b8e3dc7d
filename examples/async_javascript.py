"""The async API with a JavaScript session."""

import asyncio

import corral


async def main() -> None:
    async with corral.AsyncSandbox(language="javascript") as sandbox:
        await sandbox.run("let total = 0")
        for n in range(5):
            await sandbox.run(f"total += {n}")
        print((await sandbox.run("console.log(total)")).stdout, end="")


asyncio.run(main())
