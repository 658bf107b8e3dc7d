"""Many short, independent programs on a warm pool: each runs isolated (fresh interpreter, home, /tmp,
pid and IPC namespaces) on a long-lived sandbox, with its own input files."""

import corral

programs = [f"print(sum(range({n})))" for n in range(20)]
with corral.Pool(size=4) as pool:
    for code in programs:
        result = pool.run(code + "\nprint(open('task.txt').read())", timeout=5, files={"task.txt": code})
        print(result.stdout.strip(), f"{result.timing.total_ms:.1f} ms", "warm" if result.warm_pool_hit else "cold")
