"""The agent's kernel counters: whole-file reads searched as bytes give what a line-by-line read gave."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.agent import counters


@pytest.mark.parametrize("data, name, value", [
    (b"usage_usec 125\nuser_usec 100\n", "usage_usec", 125),
    (b"nr_free 1\noom_kill 3\nnr_x 4\n", "oom_kill", 3),
    (b"nr_free 1\noom_kill 7", "oom_kill", 7),  # the last line, without a newline
    (b"pgoom_kill 9\nx 1\n", "oom_kill", None),  # another name ending the same way
    (b"oom_kill_total 9\n", "oom_kill", None),
    (b"", "oom_kill", None),
])
def test_a_field_is_found_by_its_whole_name(data, name, value):
    assert counters.field(data, name) == value


def test_the_kernels_own_files_read_whole(tmp_path: Path):
    vmstat = Path("/proc/vmstat").read_bytes()
    assert counters.read_whole("/proc/vmstat")[:100] == vmstat[:100]
    expected = next(int(line.split()[1]) for line in vmstat.splitlines() if line.startswith(b"oom_kill "))
    assert counters.oom_kills() == expected
    big = tmp_path / "big"
    big.write_bytes(b"x" * 200_000)  # longer than one read
    assert counters.read_whole(str(big)) == b"x" * 200_000
