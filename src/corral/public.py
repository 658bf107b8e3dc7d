"""The sandbox classes of ``import corral``: a local sandbox, plus the entry points to hosted ones.

``corral.AsyncSandbox`` / ``corral.Sandbox`` are :class:`corral.sandbox.AsyncSandbox` /
:class:`corral.sync.Sandbox` (constructed, they are a local sandbox) with the static
methods ``create``, ``connect``, ``list`` and ``resume`` of :mod:`corral.client`, which
return a hosted sandbox (:class:`corral.client.AsyncHostedSandbox` /
:class:`corral.client.HostedSandbox`). They live here, above both, so that the engine
(pools, the hosted service, batches, the cluster) and ``corral.run`` never import the
client (httpx, the hosted service): only a program that names ``corral.Sandbox`` does.
"""

from __future__ import annotations

from corral import sandbox, sync
from corral.client.handle import AsyncHostedSandbox
from corral.client.sync import HostedSandbox


class AsyncSandbox(sandbox.AsyncSandbox):
    """A local sandbox that lives until closed (``async with`` starts and kills it); the static methods
    give hosted sandboxes, with an id, on a corral server (``server=URL``) or in process."""

    create = staticmethod(AsyncHostedSandbox.create)
    connect = staticmethod(AsyncHostedSandbox.connect)
    list = staticmethod(AsyncHostedSandbox.list)
    resume = staticmethod(AsyncHostedSandbox.resume)


class Sandbox(sync.Sandbox):
    """A local sandbox that lives until closed (``with`` starts and kills it); the static methods give
    hosted sandboxes, with an id, on a corral server (``server=URL``) or in process."""

    create = staticmethod(HostedSandbox.create)
    connect = staticmethod(HostedSandbox.connect)
    list = staticmethod(HostedSandbox.list)
    resume = staticmethod(HostedSandbox.resume)
