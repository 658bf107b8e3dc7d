"""The same code in a microVM: a guest kernel between the code and the host.

The first start builds the guest image (about 12 s, once per machine) and takes a memory
template for this VM shape (one cold boot, about 3 s under TCG); later starts restore from it.
"""

import corral

probe = "import os, platform; print(platform.release(), os.getuid(), sorted(os.listdir('/sys/class/net')))"

with corral.Sandbox(isolation="microvm", memory_mb=256) as sandbox:
    print("guest kernel, uid, network interfaces:", sandbox.run(probe).stdout, end="")
    sandbox.run("data = [n * n for n in range(10)]")                  # session state lives in the guest
    print(sandbox.run("print(sum(data))").stdout, end="")
    sandbox.files.write("notes.txt", b"kept in the guest's tmpfs home\n")
    print(sandbox.commands.run("cat notes.txt; uname -m").stdout, end="")
    hog = sandbox.run("x = bytearray(1024 * 1024 * 1024)")           # past memory_mb: the guest OOM killer
    print("memory bomb killed:", hog.oom_killed, "| agent still serves:", sandbox.run("print('ok')").stdout, end="")

with corral.Pool(size=2, isolation="microvm") as pool:               # VMs restored and warmed up ahead
    results = [pool.run(f"print({n} ** 2)") for n in range(5)]
    print([r.stdout.strip() for r in results], "warm hits:", sum(r.warm_pool_hit for r in results))
