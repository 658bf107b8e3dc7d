"""``corral mcp``: corral's sandboxes as tools of the Model Context Protocol.

:mod:`corral.mcp.server` declares the tools and serves them over stdio or
streamable HTTP; :mod:`corral.mcp.sandboxes` keeps the sandboxes this server
created (by id, with a cap); :mod:`corral.mcp.content` turns corral's results
into MCP content (text, and images from rich display outputs). Needs the
``mcp`` extra (``pip install 'corral[mcp]'``).
"""
