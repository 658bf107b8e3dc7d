"""corral on a Ray cluster: runs, a batch and a session spread over the nodes that advertise corral_host.

    pip install 'corral[ray]'
    ray start --head --resources='{"corral_host": 1}'       # and on each other node: ray start --address=...
    python examples/cluster.py                               # RAY_ADDRESS or "auto" finds the cluster
"""

import collections

import corral.cluster as cc

items = [{"code": "print(int(input()) ** 2)", "tests": [{"stdin": f"{n}\n", "expected": f"{n * n}\n"}]}
         for n in range(40)]

with cc.Pool(address="auto", isolation="process", per_node=4) as pool:
    print("hosts:", [(node["hostname"], node["node_id"][:8]) for node in pool.nodes()])
    result = pool.run("import platform; print(platform.node())")
    print("one run on", result.node_id[:8], "->", result.stdout.strip())

    per_node = collections.Counter()
    for item in pool.run_many(items, concurrency=16, retry_safe=True):   # pure functions of stdin: safe to re-run
        per_node[item.node_id[:8] if item.node_id else "lost"] += 1
        assert item.accepted, item
    print("items per node:", dict(per_node))

    with pool.sandbox() as session:                                        # pinned to one node
        session.run("total = 0")
        for n in range(5):
            session.run(f"total += {n}")
        print("session on", session.node_id[:8], "->", session.run("print(total)").stdout.strip())
