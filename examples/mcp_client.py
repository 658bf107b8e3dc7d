"""An MCP client that starts `corral mcp` over stdio and runs code in a sandbox, as an agent would.

    pip install 'corral[mcp]'
    python examples/mcp_client.py                               # sandboxes in the MCP server's process
    CORRAL_API_KEY=ck_... python examples/mcp_client.py http://127.0.0.1:8700   # on a corral server
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client


def show(result) -> None:
    """Print a tool's result: its text, a line for each image."""
    if result.is_error:
        print("tool error:")
    for block in result.content:
        print(block.text if block.type == "text" else f"[{block.type} {getattr(block, 'mime_type', '')}]")


async def main() -> None:
    options = ["--server", sys.argv[1]] if len(sys.argv) > 1 else []
    server = StdioServerParameters(command="corral", args=["mcp", *options], env=dict(os.environ))
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        print("tools:", ", ".join(tool.name for tool in (await session.list_tools()).tools))

        created = await session.call_tool("create_sandbox", {"template": "python"})
        sandbox_id = created.structured_content["sandbox_id"]
        print("sandbox:", sandbox_id)

        # a session: the variables of one call are there in the next
        await session.call_tool("run_code", {"sandbox_id": sandbox_id, "code": "primes = [2, 3, 5, 7]"})
        show(await session.call_tool("run_code", {"sandbox_id": sandbox_id, "code": "print(sum(primes))"}))

        await session.call_tool("write_file", {"sandbox_id": sandbox_id, "path": "data/in.txt",
                                               "content": "one\ntwo\nthree\n"})
        show(await session.call_tool("run_command", {"sandbox_id": sandbox_id, "command": "wc -l data/in.txt"}))
        show(await session.call_tool("list_files", {"sandbox_id": sandbox_id, "path": "data"}))

        # limits and mistakes come back as tool errors the model can read
        show(await session.call_tool("run_code", {"sandbox_id": sandbox_id, "code": "while True: pass",
                                                  "timeout": 1}))
        show(await session.call_tool("read_file", {"sandbox_id": "sbx_unknown", "path": "x"}))

        await session.call_tool("kill_sandbox", {"sandbox_id": sandbox_id})
    # leaving the session closes the server's stdin: it kills every sandbox it still has, and exits


asyncio.run(main())
