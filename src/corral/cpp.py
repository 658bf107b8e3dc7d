"""C++ with Debian's g++: the flags, the batch command lines, and the one-shot script.

A batch item is compiled once (:data:`COMPILE_COMMAND`, in the item's sandbox, with the
item's ``compile_timeout``) and the binary is run once per test (:data:`RUN_COMMAND`).
A one-shot run (``corral.run(code, "cpp")``) is one shell script (:func:`oneshot_script`)
that compiles into a fresh directory under /tmp and then execs the binary, with the run's
stdin, within the run's timeout; a failed compile prints the compiler's output on stderr and
exits :data:`COMPILE_ERROR_EXIT`. Includes resolve from the home directory (the working
directory), where files written to the sandbox are.
"""

from __future__ import annotations

import secrets
import shlex

#: Directory of a batch item's source and binary inside its sandbox (kept for the item's runs).
BUILD_DIR = "/tmp/corral-cpp"
SOURCE = f"{BUILD_DIR}/main.cpp"
BINARY = f"{BUILD_DIR}/main"
#: The GNU dialect of C++17 (so <bits/stdc++.h> works), optimised, no temporary files, includes from ".".
FLAGS = ("-std=gnu++17", "-O2", "-pipe", "-I.")
COMPILE_COMMAND = shlex.join(["g++", *FLAGS, "-o", BINARY, SOURCE])
RUN_COMMAND = f"exec {BINARY}"
#: Exit status of a one-shot C++ run whose compile failed (the program itself never ran).
COMPILE_ERROR_EXIT = 125


def oneshot_script(code: str) -> str:
    """A bash script that compiles ``code`` and runs it (stdin goes to the program)."""
    delimiter = f"CORRAL_CPP_{secrets.token_hex(8)}"
    while delimiter in code:  # cannot end the here-document early
        delimiter = f"CORRAL_CPP_{secrets.token_hex(8)}"
    body = code if code.endswith("\n") else code + "\n"
    flags = " ".join(FLAGS)
    return (
        'd=$(mktemp -d /tmp/corral-cpp.XXXXXX) || exit 1\n'
        f"cat > \"$d/main.cpp\" <<'{delimiter}'\n{body}{delimiter}\n"
        f'g++ {flags} -o "$d/main" "$d/main.cpp" >&2 </dev/null || '
        f'{{ echo "corral: compile error (g++ exit $?)" >&2; exit {COMPILE_ERROR_EXIT}; }}\n'
        'exec "$d/main"\n'
    )
