"""corral on a Ray cluster: one sandbox host per node, runs and batches placed by free capacity.

``pip install 'corral[ray]'``; nodes that can sandbox advertise the ``corral_host`` resource
(``ray start --resources='{"corral_host": 1}'``). ``Pool``/``AsyncPool`` have corral's pool API
(``run``, ``run_many``/``map``, ``sandbox``); results carry the ``node_id`` they ran on. See
docs/cluster.md.
"""

from corral.cluster.nodes import HOST_RESOURCE
from corral.errors import NodeLostError
from corral.cluster.pool import MAX_ATTEMPTS, AsyncPool
from corral.cluster.results import ClusterBatchResult, ClusterExecutionResult
from corral.cluster.session import AsyncClusterSandbox
from corral.cluster.sync import Pool, Sandbox

__all__ = ["HOST_RESOURCE", "MAX_ATTEMPTS", "AsyncClusterSandbox", "AsyncPool", "ClusterBatchResult",
           "ClusterExecutionResult", "NodeLostError", "Pool", "Sandbox"]
