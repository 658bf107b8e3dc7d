"""The HTTP contract between a corral server and its clients, imported by both sides.

``schemas`` are the request and answer bodies, ``states`` a hosted sandbox's
lifecycle, ``errors`` the one table between corral errors and HTTP answers.
Nothing here does I/O.
"""
