"""``ray start`` for a worker node whose address is 127.0.0.1 (run as a script by ray_cluster.py).

Ray 2.60 rewrites a loopback ``--address``/``--node-ip-address`` to the machine's outward
address (found by asking the OS which source address reaches 8.8.8.8; no packet is sent),
unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which in turn refuses to start a worker node.
So the test cluster sets that variable (head and driver then keep 127.0.0.1) and starts its
worker nodes through this wrapper, which allows them and keeps their address 127.0.0.1.
"""

import sys

import ray._private.ray_constants as ray_constants
import ray._private.services as services
from ray.scripts.scripts import main

ray_constants.ENABLE_RAY_CLUSTER = True  # allow a worker node; the env var keeps every other lookup on loopback
services.get_node_ip_address = lambda address=None: "127.0.0.1"

if __name__ == "__main__":
    sys.argv = ["ray", *sys.argv[1:]]
    main()
