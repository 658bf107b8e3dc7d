"""The warm daemon: a per-user process that keeps ``corral run``'s sandboxes warm between command lines.

A ``corral run`` in a fresh process pays for pydantic, corral's models and a
cold sandbox every time (~240 ms here). With the daemon, a plain ``corral
run`` (:func:`corral.cli.run_args.parse_fast`) imports nothing heavy: it sends
the program to the daemon over a Unix socket (:mod:`corral.cli.warm.client`),
which runs it with :func:`corral.arun` in its shared warm sandboxes (a fork per
run, the same per-run isolation as every ``corral.run``) and streams the output
back (:mod:`corral.cli.warm.server`).

The first ``corral run`` that finds no daemon runs its program in-process as
before and starts one in the background; the daemon exits after
``CORRAL_DAEMON_IDLE`` seconds without a run (600). ``CORRAL_DAEMON=off`` never
uses or starts one. Only the user who started it can reach it (a 0700
directory, and the peer's uid checked on every connection), and it serves only
clients of the same corral (same version, interpreter and source files) with
the same ``CORRAL_*`` settings and ``PATH``; any other client runs in-process.
"""
