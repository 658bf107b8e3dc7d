"""The in-sandbox agent: stdlib-only Python that serves the wire protocol.

It imports nothing from corral except :mod:`corral.protocol.wire` (and, in a VM,
:mod:`corral.protocol.streams`), so the host
can copy this package (plus ``wire``) into any sandbox that has Python 3.9+.
"""
