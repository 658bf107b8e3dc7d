"""Many short, independent programs on a warm pool: each gets a fresh interpreter and sandbox."""

import corral

programs = [f"print(sum(range({n})))" for n in range(20)]
with corral.Pool(size=4) as pool:
    for code in programs:
        result = pool.run(code, timeout=5)
        print(result.stdout.strip(), f"{result.timing.total_ms:.1f} ms", "warm" if result.warm_pool_hit else "cold")
