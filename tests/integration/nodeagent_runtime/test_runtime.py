"""Container runtime against real conmon + runc, containers joined to real pod sandboxes."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from nodeagent.containers import ContainerConfig, Mount
from nodeagent.errors import ContainerRuntimeError, ExecTimeout
from nodeagent.runtime import Runtime

from .conftest import needs_root, leftovers

pytestmark = [pytest.mark.root, needs_root]

SLEEP = ["sleep", "1000"]


def cfg(rootfs: Path, cid: str, args: list[str], **kw) -> ContainerConfig:
    return ContainerConfig(id=cid, name=kw.pop("name", cid), layers=[str(rootfs)], args=args, **kw)


async def wait_for(pred, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_text(rt: Runtime, cid: str) -> list[str]:
    return [e.text for e in rt.read_log(cid)]


async def test_namespaces_process_config_and_hardening(runtime, node_net, busybox_rootfs):
    sb = await node_net.create_sandbox("pod-ns")
    info = await runtime.create_and_start(cfg(
        busybox_rootfs, "ns1", ["sh", "-c", 'echo "foo=$FOO"; echo "argv=$0 $1"; pwd; hostname; '
                                            'id -u; id -g; exec sleep 1000', "x", "y"],
        env=["FOO=bar baz"], cwd="/tmp", hostname="pod-host", user="1000:2000",
        netns_path=sb.netns_path, labels={"io.kctl.pod.uid": "pod-ns"}))
    assert info.state.status == "running" and info.state.pid > 0
    pid = info.state.pid
    for ns in ("pid", "mnt", "uts", "ipc", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(sb.netns_path).st_ino
    await wait_for(lambda: len(log_text(runtime, "ns1")) >= 6, what="log lines")
    assert log_text(runtime, "ns1")[:6] == ["foo=bar baz", "argv=x y", "/tmp", "pod-host",
                                            "1000", "2000"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"NoNewPrivs:\s+1", status)
    # runc's default capability set: AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10)
    assert int(re.search(r"CapBnd:\s+(\w+)", status).group(1), 16) == (1 << 29) | (1 << 5) | (1 << 10)
    code, out, _ = await runtime.exec("ns1", ["cat", "/proc/kcore"])
    assert out == b""  # masked path
    assert (await runtime.list())[0].labels == {"io.kctl.pod.uid": "pod-ns"}


async def test_memory_limit_oom_kill_is_reported(runtime, busybox_rootfs):
    await runtime.create_and_start(cfg(
        busybox_rootfs, "oom1", ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        memory_limit=32 << 20))
    st = await asyncio.wait_for(runtime.wait("oom1"), 30)
    assert st.status == "exited" and st.exit_code == 137 and st.oom_killed
    assert (await runtime.state("oom1")).oom_killed
    # the same allocation under a roomy limit is fine and not reported as OOM
    await runtime.create_and_start(cfg(
        busybox_rootfs, "oom2", ["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"],
        memory_limit=128 << 20))
    st = await asyncio.wait_for(runtime.wait("oom2"), 30)
    assert st.exit_code == 0 and not st.oom_killed


async def test_cpu_and_memory_limits_written_to_cgroups(runtime, busybox_rootfs):
    await runtime.create_and_start(cfg(busybox_rootfs, "cg1", SLEEP, cpu_quota=50_000,
                                       cpu_period=100_000, cpu_shares=512,
                                       memory_limit=64 << 20))
    cg = Path("/sys/fs/cgroup")
    rel = f"{runtime.cgroup_parent}/cg1"
    assert (cg / "cpu" / rel / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (cg / "cpu" / rel / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (cg / "cpu" / rel / "cpu.shares").read_text().strip() == "512"
    assert int((cg / "memory" / rel / "memory.limit_in_bytes").read_text()) == 64 << 20
    pid = (await runtime.state("cg1")).pid
    assert str(pid) in (cg / "memory" / rel / "cgroup.procs").read_text().split()
    assert (cg / "unified" / rel).is_dir()


async def test_pod_containers_share_localhost_and_emptydir(runtime, node_net, busybox_rootfs,
                                                           tmp_path):
    sb = await node_net.create_sandbox("pod-share")
    empty = tmp_path / "emptydir"
    empty.mkdir()
    vol = [Mount(str(empty), "/shared", False)]
    # The listener's stdin must not hit EOF: busybox nc then half-closes the connection
    # at once and the client may exit before sending (measured: ~5% of runs with /dev/null).
    await runtime.create_and_start(cfg(busybox_rootfs, "srv", [
        "sh", "-c", "sleep 1000 | nc -l -p 7777 > /shared/got"],
        netns_path=sb.netns_path, mounts=vol, hostname="pod-share"))
    await runtime.create_and_start(cfg(busybox_rootfs, "cli", [
        "sh", "-c", "for i in $(seq 300); do echo hello-over-lo | nc 127.0.0.1 7777 && break; "
                    "sleep 0.1; done; echo client-done $i; exec sleep 1000"],
        netns_path=sb.netns_path, mounts=vol, hostname="pod-share"))
    try:
        await wait_for(lambda: (empty / "got").exists() and (empty / "got").read_text(),
                       timeout=30, what="data received over the pod's localhost")
    except AssertionError as exc:
        diag = {c: (await runtime.state(c), log_text(runtime, c)) for c in ("srv", "cli")}
        raise AssertionError(f"{exc}: got={(empty / 'got').exists()} {diag}") from None
    assert (empty / "got").read_text() == "hello-over-lo\n"
    code, out, _ = await runtime.exec("cli", ["cat", "/shared/got"])  # visible to both
    assert (code, out) == (0, b"hello-over-lo\n")
    # each container keeps its own pid namespace while sharing the network one
    p1, p2 = (await runtime.state("srv")).pid, (await runtime.state("cli")).pid
    assert os.readlink(f"/proc/{p1}/ns/net") == os.readlink(f"/proc/{p2}/ns/net")
    assert os.readlink(f"/proc/{p1}/ns/pid") != os.readlink(f"/proc/{p2}/ns/pid")


async def test_pod_files_bind_mounted_read_only(runtime, busybox_rootfs, tmp_path):
    from .conftest import pod_files
    files = pod_files(tmp_path / "pod", "web-0", "10.250.1.9")
    mounts = [(host, ctr, True) for ctr, host in files.items()]
    await runtime.create_and_start(cfg(busybox_rootfs, "etc1", SLEEP, mounts=mounts,
                                       hostname="web-0"))
    code, out, _ = await runtime.exec("etc1", ["cat", "/etc/hosts", "/etc/resolv.conf"])
    assert code == 0 and b"10.250.1.9\tweb-0" in out and b"nameserver 10.96.0.10" in out
    code, _, err = await runtime.exec("etc1", ["sh", "-c", "echo x > /etc/hosts"])
    assert code != 0 and b"Read-only" in err


async def test_stop_sends_term_first(runtime, busybox_rootfs, tmp_path):
    shared = tmp_path / "s"
    shared.mkdir()
    await runtime.create_and_start(cfg(busybox_rootfs, "term1", [
        "sh", "-c", 'trap "echo got-term > /shared/term; exit 0" TERM; '
                    'while true; do sleep 0.1; done'], mounts=[(str(shared), "/shared", False)]))
    await asyncio.sleep(0.3)  # let sh install its trap
    st = await runtime.stop("term1", grace_seconds=20)
    assert st.status == "exited" and st.exit_code == 0
    assert (shared / "term").read_text() == "got-term\n"


async def test_stop_kills_after_grace_when_term_is_ignored(runtime, busybox_rootfs):
    info = await runtime.create_and_start(cfg(busybox_rootfs, "kill1", SLEEP))
    # PID 1 sleep ignores TERM, but only once exec'd: until then runc's Go init handles it
    await wait_for(lambda: Path(f"/proc/{info.state.pid}/comm").read_text().strip() == "sleep",
                   what="init to exec sleep")
    t0 = time.monotonic()
    st = await runtime.stop("kill1", grace_seconds=1.5)
    assert time.monotonic() - t0 >= 1.4
    assert st.status == "exited" and st.exit_code == 137 and not st.oom_killed
    assert (await runtime.stop("kill1", 1)).status == "exited"  # stopping again is a no-op


async def test_containers_survive_runtime_and_are_adopted(runtime, busybox_rootfs):
    root, parent = runtime.root, runtime.cgroup_parent
    info = await runtime.create_and_start(cfg(busybox_rootfs, "adopt1", SLEEP,
                                              labels={"io.kctl.pod.name": "web"}))
    conmon_pid = int((Path(info.bundle) / "conmon.pid").read_text())
    assert os.getsid(conmon_pid) != os.getsid(0)  # own session: outlives the agent
    state = runtime.state_dir
    del runtime
    rt2 = Runtime(root, cgroup_parent=parent, state_dir=state)
    infos = await rt2.list()
    assert [(i.id, i.name, i.labels, i.state.status) for i in infos] == \
        [("adopt1", "adopt1", {"io.kctl.pod.name": "web"}, "running")]
    assert infos[0].state.pid == info.state.pid
    st = await rt2.stop("adopt1", grace_seconds=0.5)
    assert st.exit_code == 137
    await rt2.remove("adopt1")
    assert await rt2.list() == []


async def test_exec_exit_codes_output_stdin_and_timeout(runtime, busybox_rootfs):
    await runtime.create_and_start(cfg(busybox_rootfs, "ex1", SLEEP, env=["GREETING=hi"]))
    assert await runtime.exec("ex1", ["sh", "-c", "echo out $GREETING; echo err >&2; exit 3"]) == \
        (3, b"out hi\n", b"err\n")
    assert await runtime.exec("ex1", ["cat"], stdin=b"from-stdin") == (0, b"from-stdin", b"")
    with pytest.raises(ExecTimeout):
        await runtime.exec("ex1", ["sleep", "100"], timeout=1)
    code, out, _ = await runtime.exec("ex1", ["ps"])
    # the timed-out exec process was killed and reaped by runc exec (no zombie left behind)
    assert not any(ln.endswith((b" sleep 100", b" [sleep]")) for ln in out.splitlines()), out


async def test_logs_are_cri_format_and_followable(runtime, busybox_rootfs):
    await runtime.create_and_start(cfg(busybox_rootfs, "log1", [
        "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; "
                    "head -c 20000 /dev/zero | tr '\\0' a; echo; echo oops >&2"]))
    got = [e async for e in runtime.follow_log("log1")]
    # conmon reads the two pipes independently: order is only guaranteed within a stream
    assert [e.text for e in got if e.stream == "stdout"] == ["line1", "line2", "line3", "a" * 20000]
    assert [e.text for e in got if e.stream == "stderr"] == ["oops"]
    raw = runtime.log_path("log1").read_text().splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d (stdout|stderr) [FP] ", ln)
               for ln in raw), raw
    assert any(" stdout P " in ln for ln in raw)  # conmon split the long line into chunks
    assert sorted(e.text for e in runtime.read_log("log1", tail=2)) == ["a" * 20000, "oops"]
    st = await runtime.state("log1")
    assert st.status == "exited" and st.exit_code == 0 and st.finished_at >= st.started_at - 1
    with pytest.raises(ContainerRuntimeError, match="not running"):
        await runtime.exec("log1", ["true"])
    await runtime.remove("log1", keep_logs=True)
    assert runtime.log_path("log1").exists()
    runtime.log_path("log1").unlink()


async def test_errors_are_translated_and_leave_nothing(runtime, busybox_rootfs):
    with pytest.raises(ContainerRuntimeError):
        await runtime.create_and_start(cfg(busybox_rootfs, "bad1", ["/no/such/binary"]))
    with pytest.raises(ContainerRuntimeError) as ei:
        await runtime.create_and_start(cfg(busybox_rootfs, "bad2", SLEEP,
                                           netns_path="/var/run/netns/kctltest-does-not-exist"))
    assert "bad2" in str(ei.value)
    await runtime.create_and_start(cfg(busybox_rootfs, "dup1", SLEEP))
    with pytest.raises(ContainerRuntimeError, match="already exists"):
        await runtime.create_and_start(cfg(busybox_rootfs, "dup1", SLEEP))
    assert (await runtime.state("dup1")).status == "running"  # the first one is untouched
    await runtime.remove("dup1")
    assert (await runtime.state("nope")).status == "unknown"
    assert await runtime.list() == []
    assert leftovers(rt=runtime) == []


async def test_start_reads_the_exec_fifo_and_a_dead_init_is_an_error(runtime, busybox_rootfs, monkeypatch):
    """The start is runc start's exec-fifo handshake in-process: afterwards runc itself says
    running and the fifo is gone; an init killed between create and start is runc start's
    "container process is already dead", and the half-made container is removed."""
    import json
    import signal

    from nodeagent import runtime as runtime_mod
    await runtime.create_and_start(cfg(busybox_rootfs, "fifo1", SLEEP))
    assert not (runtime.runc_root / "fifo1" / "exec.fifo").exists()
    assert json.loads(await runtime._runc("state", "fifo1"))["status"] == "running"
    real = runtime_mod.start_created

    async def kill_then_start(state_dir, pid, runc_start):
        os.kill(pid, signal.SIGKILL)
        await real(state_dir, pid, runc_start)
    monkeypatch.setattr(runtime_mod, "start_created", kill_then_start)
    with pytest.raises(ContainerRuntimeError, match="container process is already dead"):
        await runtime.create_and_start(cfg(busybox_rootfs, "fifo2", SLEEP))
    assert not runtime.exists("fifo2")
    await runtime.remove("fifo1")
    assert leftovers(rt=runtime) == []


async def test_remove_everything_leaves_nothing_behind(runtime, node_net, node_netns,
                                                       busybox_rootfs):
    for pod in ("pod-x", "pod-y"):
        sb = await node_net.create_sandbox(pod)
        for c in ("app", "side"):
            await runtime.create_and_start(cfg(busybox_rootfs, f"{pod}-{c}", SLEEP,
                                               netns_path=sb.netns_path, memory_limit=64 << 20))
    assert len([i for i in await runtime.list() if i.state.status == "running"]) == 4
    assert REGISTRY.get_sample_value("kctl_nodeagent_runtime_running_containers") == 4
    assert REGISTRY.get_sample_value("kctl_nodeagent_runtime_operation_duration_seconds_count",
                                     {"operation": "create_and_start"}) >= 4
    assert leftovers(rt=runtime, net=node_net, node_netns=node_netns) != []
    for info in await runtime.list():
        await runtime.stop(info.id, grace_seconds=0.2)
        await runtime.remove(info.id)
    for pod in ("pod-x", "pod-y"):
        await node_net.delete_sandbox(pod)
    assert await runtime.list() == []
    assert leftovers(rt=runtime, net=node_net, node_netns=node_netns) == []


async def test_concurrent_creates_and_removes(runtime, node_net, node_netns, busybox_rootfs):
    """Pod workers run in parallel: creates and removes interleave on one cgroup parent."""
    sb = await node_net.create_sandbox("pod-par")
    ids = [f"par{i}" for i in range(4)]
    infos = await asyncio.gather(*(runtime.create_and_start(
        cfg(busybox_rootfs, cid, SLEEP, netns_path=sb.netns_path)) for cid in ids))
    assert {i.state.status for i in infos} == {"running"}
    await asyncio.gather(runtime.remove(ids[0]), runtime.remove(ids[1]),
                         runtime.create_and_start(cfg(busybox_rootfs, "par9", SLEEP)))
    assert sorted(i.id for i in await runtime.list()) == ["par2", "par3", "par9"]
    await asyncio.gather(*(runtime.remove(c) for c in ("par2", "par3", "par9")))
    await node_net.delete_sandbox("pod-par")
    assert leftovers(rt=runtime, net=node_net, node_netns=node_netns) == []


async def test_container_outlives_the_agent_process(runtime, busybox_rootfs):
    """An 'agent' process starts a container and exits; a new Runtime adopts it."""
    import sys
    script = (
        "import asyncio, sys\n"
        "from nodeagent.containers import ContainerConfig\n"
        "from nodeagent.runtime import Runtime\n"
        "rt = Runtime(sys.argv[1], cgroup_parent=sys.argv[2], state_dir=sys.argv[4])\n"
        "info = asyncio.run(rt.create_and_start(ContainerConfig(id='orphan1', name='o',\n"
        "    layers=[sys.argv[3]], args=['sleep', '1000'], labels={'k': 'v'})))\n"
        "print(info.state.pid)\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(runtime.root), runtime.cgroup_parent, str(busybox_rootfs),
        str(runtime.state_dir),
        stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[3]))
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    pid = int(out)
    infos = await Runtime(runtime.root, cgroup_parent=runtime.cgroup_parent, state_dir=runtime.state_dir).list()
    assert [(i.id, i.labels, i.state.status, i.state.pid) for i in infos] == \
        [("orphan1", {"k": "v"}, "running", pid)]
    assert (await runtime.stop("orphan1", 0.2)).exit_code == 137


async def test_remove_deletes_a_containers_writes_off_the_event_loop(runtime, busybox_rootfs, monkeypatch):
    """What a container wrote (its overlay upper dir, ROOT/layers/ID) can be
    large: remove() deletes it (and the bundle) in a worker thread, so the
    agent's loop goes on."""
    import shutil
    import threading
    removed = []                 # (path, on the loop's thread?)
    rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, *a, **kw: (
        removed.append((str(path), threading.current_thread() is threading.main_thread())), rmtree(path, *a, **kw)))
    info = await runtime.create_and_start(cfg(busybox_rootfs, "writer", [
        "sh", "-c", "mkdir /junk && cd /junk && for i in $(seq 1 2000); do echo $i > f$i; done && sleep 1000"]))
    bundle = runtime._dir(info.id)
    await wait_for(lambda: len(list(bundle.rglob("f*"))) >= 2000, what="the container's 2,000 files")
    await runtime.stop(info.id, grace_seconds=0.2)
    await runtime.remove(info.id)
    layer = runtime.layers / info.id
    assert not bundle.exists() and not layer.exists()
    assert (str(bundle), False) in removed and (str(layer), False) in removed
    assert leftovers(rt=runtime) == []


async def test_state_on_its_tmpfs_writable_layer_on_disk_and_orphan_layers_removed(runtime, busybox_rootfs):
    """The bundle, runc's root and conmon's files live on the state tmpfs (one
    mount, however often it is asked for); the container's writes on disk
    under ROOT/layers/ID; a layer whose bundle is gone (the tmpfs went with a
    reboot) is removed by the next Runtime on the root."""
    from deploy.lab.nsutil import read_mountinfo
    from nodeagent.statedir import ensure_tmpfs

    def fstypes(path):
        return [m["fstype"] for m in read_mountinfo() if m["mountpoint"] == str(path)]
    assert fstypes(runtime.state_dir) == ["tmpfs"]
    assert ensure_tmpfs(str(runtime.state_dir)) == str(runtime.state_dir)
    assert fstypes(runtime.state_dir) == ["tmpfs"]                   # not mounted twice
    info = await runtime.create_and_start(cfg(busybox_rootfs, "lay1", ["sh", "-c", "echo hi > /w; sleep 1000"]))
    assert Path(info.bundle).parent == runtime.state_dir / "containers"
    assert (runtime.runc_root / "lay1" / "state.json").exists()
    layer = runtime.layers / "lay1"
    await wait_for(lambda: (layer / "upper" / "w").exists(), what="the container's write in its layer")
    assert fstypes(runtime.layers) == [] and runtime.layers.parent == runtime.root
    (runtime.layers / "gone1" / "upper").mkdir(parents=True)          # its bundle went with the tmpfs
    again = Runtime(runtime.root, cgroup_parent=runtime.cgroup_parent, state_dir=runtime.state_dir)
    assert not (runtime.layers / "gone1").exists() and (layer / "upper" / "w").exists()
    assert [i.id for i in await again.list()] == ["lay1"]
    await runtime.stop("lay1", 0.2)
    await runtime.remove("lay1")
    assert not layer.exists() and leftovers(rt=runtime) == []
