"""The hosted service: sandboxes with ids, records, snapshots, templates and access tokens.

``service`` is the one command surface (create, run, pause, resume, kill...).
The HTTP server (:mod:`corral.server`) and the in-process transport of
:mod:`corral.client` only translate into it; nothing here knows HTTP.
"""
