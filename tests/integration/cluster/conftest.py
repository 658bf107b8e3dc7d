"""One real two-node Ray cluster on 127.0.0.1 for the cluster tests, torn down (and checked) after the last one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ray_cluster import RAY_ENV, RayCluster

os.environ.update(RAY_ENV)  # before Ray is imported: the driver (this process) must also keep 127.0.0.1

try:
    import ray
except ImportError:  # the `ray` extra is not installed
    ray = None


@pytest.fixture(scope="package")  # started once, stopped after the last cluster test (not at the end of the run)
def ray_cluster() -> Iterator[RayCluster]:
    """A head and one worker node, each advertising corral_host; the test process is connected as the driver."""
    if ray is None:
        pytest.skip("ray is not installed (pip install 'corral[ray]')")
    cluster = RayCluster()
    try:
        try:
            cluster.start_head()
            cluster.add_node()
        except RuntimeError as exc:
            pytest.skip(f"a local Ray cluster cannot start here: {exc}")
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
        left = cluster.leftovers()
        if not left:
            cluster.remove()  # kept, with its logs, when something is left running
        assert not left, f"Ray processes left running after the cluster was stopped: {left}"
