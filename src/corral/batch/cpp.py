"""C++ with Debian's g++: where the source and the binary go, and the command lines.

A batch item is compiled once (:data:`COMPILE_COMMAND`, in the item's sandbox, with the
item's ``compile_timeout``) and the binary is run once per test (:data:`RUN_COMMAND`).
Includes resolve from the home directory, where the item's files are.
"""

from __future__ import annotations

import shlex

#: Directory of the source and the binary inside the sandbox (kept for the item's runs).
BUILD_DIR = "/tmp/corral-cpp"
SOURCE = f"{BUILD_DIR}/main.cpp"
BINARY = f"{BUILD_DIR}/main"
#: Flags: the GNU dialect of C++17 (so <bits/stdc++.h> works), optimised, no temporary files.
FLAGS = ("-std=gnu++17", "-O2", "-pipe", "-I.")
COMPILE_COMMAND = shlex.join(["g++", *FLAGS, "-o", BINARY, SOURCE])
RUN_COMMAND = f"exec {BINARY}"
