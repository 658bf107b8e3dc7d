"""corral as a service: sandboxes, snapshots and API keys behind an HTTP API.

``service`` is the one internal command surface (create, run, pause, resume,
kill...); ``app`` and ``routes`` only translate HTTP into it, and the local mode
of :mod:`corral.client` calls it in process. Modules here that do not name
FastAPI import nothing from it.
"""
