"""``corral mcp``: corral's sandboxes as tools of the Model Context Protocol.

:mod:`corral.mcp.tools` declares the tools, :mod:`corral.mcp.server` serves
them over stdio or streamable HTTP (:mod:`corral.mcp.stdin_relay` lets a
signal stop the stdio server), :mod:`corral.mcp.sandboxes` keeps the
sandboxes this server created (by id, with a cap), :mod:`corral.mcp.content`
turns corral's results into MCP content (text; images from rich display
outputs and image files). Needs the
``mcp`` extra (``pip install 'corral[mcp]'``).
"""
