"""How a test's stdout is compared with what it expects.

- ``exact``: byte for byte (as text).
- ``whitespace``: the same whitespace-separated tokens (so spacing, blank lines and a final newline do not matter).
- ``float``: the same tokens, where two tokens that both read as numbers match when they differ by at most
  ``tolerance``, absolutely or relative to the expected value (``nan`` matches ``nan``); other tokens match exactly.
"""

from __future__ import annotations

import math

from corral.batch.items import CompareMode


def outputs_match(actual: str, expected: str, mode: CompareMode, tolerance: float = 1e-6) -> bool:
    """True when ``actual`` passes for ``expected`` under ``mode``."""
    if mode == "exact":
        return actual == expected
    got, want = actual.split(), expected.split()
    if len(got) != len(want):
        return False
    if mode == "whitespace":
        return got == want
    return all(_tokens_match(a, e, tolerance) for a, e in zip(got, want))


def _tokens_match(actual: str, expected: str, tolerance: float) -> bool:
    if actual == expected:
        return True
    try:
        a, e = float(actual), float(expected)
    except ValueError:
        return False
    if math.isnan(a) or math.isnan(e):
        return math.isnan(a) and math.isnan(e)
    if math.isinf(a) or math.isinf(e):
        return a == e
    return abs(a - e) <= tolerance or abs(a - e) <= tolerance * abs(e)
