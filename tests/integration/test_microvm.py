"""What only the microVM level has: a guest kernel, QEMU, snapshots and their failure modes.

That no QEMU process outlives its sandbox is checked after every microVM test by the
``isolation_level`` fixture (tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

import corral
from corral.backends import registry
from corral.backends.microvm import backend as microvm
from corral.backends.microvm.host_user import TEMPLATE_GID, VM_UID_BASE
from corral.backends.microvm.vm import QEMU_OVERHEAD_MB, Vm
from corral.errors import SandboxCrashedError, SandboxStartError
from corral.models import SandboxSpec

pytestmark = [pytest.mark.sandbox, pytest.mark.levels("microvm"), pytest.mark.slow]


def _backend() -> microvm.MicrovmBackend:
    return registry.resolve("microvm")


def test_two_restores_from_one_snapshot_are_independent():
    probe = ("import os, random, uuid; open('/home/user/mine', 'w').write(str(os.getpid()));"
             "print(os.urandom(16).hex(), random.random(), uuid.uuid4(), sorted(os.listdir('/home/user')))")
    with corral.Sandbox() as first, corral.Sandbox() as second:
        a = first.run(probe).stdout.split()
        b = second.run(probe).stdout.split()
        assert a[:3] != b[:3] and all(x != y for x, y in zip(a[:3], b[:3]))  # kernel RNG, random, uuid
        first.files.write("only-here.txt", b"1")
        assert second.run("import os; print(os.path.exists('/home/user/only-here.txt'))").stdout == "False\n"
        assert first.run("x = 1").ok and "NameError" in second.run("print(x)").stderr


def test_restore_is_the_start_path_and_the_template_is_reused():
    async def scenario():
        backend = _backend()
        image = await microvm._image()
        shape = await backend.shape_for(SandboxSpec(), image)
        template = await backend.template(image, shape)
        assert template.ram.stat().st_size == shape.memory_mb * 2**20 and template.state.stat().st_size < 2**20
        assert await backend.template(image, shape) == template
    asyncio.run(scenario())


def test_the_guest_has_no_network_device_and_its_own_kernel():
    with corral.Sandbox(language="shell") as sandbox:
        result = sandbox.run("ls /sys/class/net; uname -r; cat /proc/1/comm; id -u")
        interfaces, kernel, init, uid = result.stdout.split("\n")[:4]
        assert interfaces == "lo" and kernel != os.uname().release and init == "python3" and uid == "1000"
        console = sandbox.console_log()  # the user can read the guest's serial console
        assert "init: starting the agent" in console and "Linux version" not in console.split("init:")[1]


def test_the_guest_keeps_the_tsc_as_its_clock():
    """Under TCG the clocksource watchdog used to swap the TSC for 4 ms jiffies some seconds after a
    restore, which rounded every timer and sleep in the guest up to a tick."""
    with corral.Sandbox(language="shell") as sandbox:
        clock = "cat /sys/devices/system/clocksource/clocksource0/current_clocksource"
        assert sandbox.run(clock).stdout == "tsc\n"
        sandbox.run("sleep 3")
        assert sandbox.run(clock).stdout == "tsc\n"


def test_user_code_cannot_open_the_agent_ports():
    with corral.Sandbox(language="shell") as sandbox:
        result = sandbox.run("for p in /dev/vport*; do (exec 3<>$p) 2>/dev/null && echo opened $p; done; echo done")
        assert result.stdout == "done\n"


def test_user_code_is_held_in_its_cgroup_with_the_sandbox_limits():
    with corral.Sandbox(language="shell", memory_mb=128, pids=64) as sandbox:
        result = sandbox.run("cat /proc/self/cgroup /sys/fs/cgroup/sandbox/memory.max /sys/fs/cgroup/sandbox/pids.max;"
                             "echo $$ > /sys/fs/cgroup/cgroup.procs || echo refused;"
                             "echo +cpuset > /sys/fs/cgroup/sandbox/cgroup.subtree_control || echo refused;"
                             "echo max > /sys/fs/cgroup/sandbox/memory.max || echo refused")
        assert result.stdout.split() == ["0::/sandbox", str(128 * 2**20), "64", "refused", "refused", "refused"]
        assert result.cpu_time_ms is not None and result.memory_peak_mb is not None


def test_each_qemu_runs_as_its_own_uid_in_its_seccomp_filter_and_its_cgroup():
    with corral.Sandbox() as sandbox, corral.Sandbox() as other:
        uids = []
        for vm in (sandbox._async._lease.instance, other._async._lease.instance):
            status = Path(f"/proc/{vm.process.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines())
            assert fields["Seccomp"].strip() == "2"
            uids.append(int(fields["Uid"].split()[0]))
            assert len(set(fields["Uid"].split())) == 1 and fields["Groups"].split() == [str(TEMPLATE_GID)]
            assert vm.directory.stat().st_uid == uids[-1] and vm.directory.stat().st_mode & 0o077 == 0
            if vm.cgroup is not None:
                assert vm.process.pid in vm.cgroup.pids()
        if os.geteuid() == 0:
            assert uids[0] != uids[1] and all(VM_UID_BASE < uid < VM_UID_BASE + (1 << 25) for uid in uids)
        directory = sandbox._async._lease.instance.directory
    deadline = time.monotonic() + 10  # teardown finishes in the background
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not directory.exists()


def test_qemu_is_held_on_the_host_to_guest_ram_plus_its_overhead_and_survives_a_memory_bomb():
    with corral.Sandbox() as sandbox:
        vm = sandbox._async._lease.instance
        if vm.cgroup is None:
            pytest.skip("QEMU gets no host cgroup here (corral doctor says why)")
        memory = vm.cgroup.paths["memory"]
        limit = memory / "memory.max" if (memory / "memory.max").exists() else memory / "memory.limit_in_bytes"
        assert int(limit.read_text()) == (vm.shape.memory_mb + QEMU_OVERHEAD_MB) * 2**20
        bomb = sandbox.run(f"x = bytearray({3 * sandbox.spec.limits.memory_mb} * 2**20)")
        assert bomb.oom_killed and vm.process.returncode is None  # the guest's OOM killer, not the host's
        assert sandbox.run("print('alive')").stdout == "alive\n"


def test_a_killed_qemu_is_a_crash_not_a_hang():
    with corral.Sandbox() as sandbox:
        vm = sandbox._async._lease.instance
        started = time.monotonic()
        os.kill(vm.process.pid, 9)
        with pytest.raises(SandboxCrashedError):
            sandbox.run("import time; time.sleep(30)")
        assert time.monotonic() - started < 10


def test_a_guest_that_hangs_is_reported_within_the_deadline():
    async def scenario():
        image = await microvm._image()
        shape = await _backend().shape_for(SandboxSpec(), image)
        # a VM waiting for an incoming migration that never comes: QEMU runs, the guest never does
        vm = await Vm.launch(microvm.qemu_binary(), (image.kernel, image.initramfs, image.rootfs), shape,
                             incoming=True)
        try:
            await vm.connect_agent(5)
            started = time.monotonic()
            with pytest.raises(SandboxStartError, match="hangs"):
                await vm.read_frame(2.0, "the guest agent's hello")
            assert time.monotonic() - started < 5
        finally:
            await vm.stop()
        assert not vm.directory.exists() and vm.process.returncode is not None
    asyncio.run(scenario())


def test_a_guest_that_panics_is_reported_with_its_console():
    async def scenario():
        image = await microvm._image()
        shape = await _backend().shape_for(SandboxSpec(), image)
        tiny = type(shape)(**{**shape.__dict__, "memory_mb": 24})  # too little to unpack the initramfs
        started = time.monotonic()
        with pytest.raises(SandboxStartError) as failure:
            await microvm.cold_boot(image, tiny, deadline_s=60)
        assert time.monotonic() - started < 60
        assert "console" in str(failure.value) or "stopped" in str(failure.value)
    asyncio.run(scenario())


def test_pause_and_resume_keep_memory_files_and_processes(tmp_path):
    from corral.channel import Channel
    from corral.execution import RunOptions, execute

    async def run(channel, code, session=True):
        options = RunOptions(language="python", code=code, session=session, timeout=30, env={}, cwd=None,
                             stdin=None, stdout_limit=1 << 20, stderr_limit=1 << 20)
        async for event in execute(channel, options, isolation="microvm", warm=False, setup_ms=0, boot_ms=0):
            result = event
        return result

    async def scenario():
        backend = _backend()
        spec = SandboxSpec(isolation="microvm")
        vm = await backend.start(spec)
        channel = Channel(vm)
        assert (await run(channel, "import random, os; x = 41; open('/home/user/f', 'w').write('kept')")).ok
        await run(channel, "import subprocess; p = subprocess.Popen(['sleep', '600'])")
        await channel.close()
        await backend.pause(vm, tmp_path / "snap")
        assert not vm.alive() and (tmp_path / "snap" / "state").is_file()
        with pytest.raises(corral.InvalidInputError, match="already holds"):
            await backend.pause(vm, tmp_path / "snap")
        draws = []
        for _ in range(2):  # resumed twice: two independent continuations of the same moment
            resumed = await backend.resume(tmp_path / "snap", spec)
            channel = Channel(resumed)
            result = await run(channel, "print(x + 1, open('/home/user/f').read(), p.poll(), os.urandom(8).hex())")
            answer, content, alive, draw = result.stdout.split()
            assert (answer, content, alive) == ("42", "kept", "None") and not result.session_reset
            oneshot = await run(channel, "import random; print(random.random())", session=False)
            draws.append((draw, oneshot.stdout))
            await channel.close()
            await resumed.stop()
        assert draws[0][0] != draws[1][0] and draws[0][1] != draws[1][1]

    asyncio.run(scenario())


def test_a_continuation_is_checked_before_it_is_resumed(tmp_path):
    async def scenario():
        with pytest.raises(corral.InvalidInputError, match="holds no snapshot"):
            await _backend().resume(tmp_path, SandboxSpec(isolation="microvm"))
    asyncio.run(scenario())
    with pytest.raises(corral.InvalidInputError, match="cannot capture"):
        asyncio.run(registry.resolve("process").pause(None, tmp_path))


def test_the_public_api_pauses_with_memory_and_continues(tmp_path):
    with corral.Sandbox() as sandbox:
        sandbox.run("import random; seed = random.random()")
        sandbox.pause_memory(tmp_path / "snap")
        assert sandbox.closed
    resumed = corral.Sandbox().start(memory_snapshot=tmp_path / "snap")
    try:
        assert resumed.run("print(type(seed).__name__)").stdout == "float\n"
    finally:
        resumed.close()
    with corral.Sandbox(isolation="process") as other:
        with pytest.raises(corral.InvalidInputError, match="cannot capture"):
            other.pause_memory(tmp_path / "other")
        assert other.run("print(1)").stdout == "1\n"  # refused, still running
