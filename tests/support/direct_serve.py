"""``corral`` with the direct test backend registered (UNSAFE: no isolation), for server test fixtures.

Usage: ``python3 direct_serve.py serve ...`` (any ``corral`` command line), with
``CORRAL_ISOLATION=direct`` in the environment to make ``auto`` mean the direct backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.direct_backend import register  # noqa: E402  (after the path it is found on)

from corral.cli import main  # noqa: E402

if __name__ == "__main__":
    register()
    main()
