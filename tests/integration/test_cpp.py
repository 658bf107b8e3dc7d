"""C++ one-shot runs (``language="cpp"``): g++, cc1plus, as and ld work inside the sandbox on every level."""

from __future__ import annotations

import pytest

import corral
from corral.cpp import COMPILE_ERROR_EXIT, oneshot_script

pytestmark = pytest.mark.sandbox

ECHO = ("#include <iostream>\n#include <string>\n"
        "int main() { std::string word; std::cin >> word; std::cout << \"got \" << word << std::endl; return 3; }")


def test_run_compiles_and_runs_with_stdin():
    result = corral.run(ECHO, "cpp", stdin="abc\n", timeout=60)
    assert (result.stdout, result.stderr, result.exit_code, result.language) == ("got abc\n", "", 3, "cpp")


def test_a_compile_error_is_stderr_and_its_own_exit_code():
    result = corral.run("int main() { return nope; }", "cpp", timeout=60)
    assert result.exit_code == COMPILE_ERROR_EXIT and result.stdout == ""
    assert "'nope' was not declared" in result.stderr.replace("\u2018", "'").replace("\u2019", "'")
    assert result.stderr.rstrip().endswith("corral: compile error (g++ exit 1)")


def test_session_run_in_cpp_sees_the_sandbox_files_and_keeps_limits():
    with corral.Sandbox(timeout=60) as sandbox:
        sandbox.files.write("values.h", "#define VALUE 42\n")
        result = sandbox.run('#include "values.h"\n#include <cstdio>\nint main() { std::printf("%d\\n", VALUE); }',
                             language="cpp")
        assert (result.stdout, result.exit_code, result.session_reset) == ("42\n", 0, False)
        spin = sandbox.run("int main() { for (;;) {} }", language="cpp", timeout=2)
        assert spin.timed_out


def test_the_script_cannot_be_ended_early_by_the_code():
    tricky = "// CORRAL_CPP_\nint main() { return 0; }\n"
    script = oneshot_script(tricky)
    delimiter = script.split("<<'")[1].split("'")[0]
    assert delimiter not in tricky and script.count(delimiter) == 2
    result = corral.run(tricky + "// CORRAL_CPP_0123456789abcdef '\"$(exit 9)\"'", "cpp", timeout=60)  # no final newline
    assert (result.exit_code, result.stderr) == (0, "")
