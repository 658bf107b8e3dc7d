"""corral's version (one place; ``corral.__version__`` and the probes' cache keys read it)."""

__version__ = "0.1.0"
