"""Node-side pod start latency (bound -> Running) next to a bare ``runc run``, in one run.

    sudo .venv/bin/python bench/pod_start.py [--pods 30] [--no-seccomp-default]

Sets up what the node agent integration tests use (harness.nodes.NodeCluster):
a root-ns bridge on a free 169.254.x.0/24, etcd + kctl-apiserver and a
docker-registry serving the offline busybox image on that bridge, and one
``kctl-nodeagent`` subprocess inside a fresh node network namespace.
Then:

1. warm-up: one pod, so the image is pulled and unpacked (image cached);
2. sequential: N pods, one at a time, each created already bound
   (``spec.nodeName`` set); latency = create call -> the watch shows the pod
   Running with its container running (apiserver + watch + agent + runc);
3. burst: once the node is quiet again (the sequential pods' netns gone and
   the machine below a third of a core busy for 0.5 s, as a node between
   bursts is; the kernel tears a netns down after its last user has gone),
   N pods created at once; pods started per second on one node (first
   create -> last Running), their latencies and the machine's CPU per pod;
4. baseline: ``bench.runc_raw.measure_bare_runc(N)`` — ``runc run true`` of a
   busybox rootfs with the same OCI spec generator, no agent/conmon/overlay/netns;
   and ``measure_bare_runc_burst(N)`` — N of them at once: containers per second
   this machine manages right now, the raw limit next to the burst's pods/s;
   and both again with the RuntimeDefault seccomp profile the agent gives
   every container that names none (security on by default; the kubelet's
   own default is Unconfined): runc compiles that filter with libseccomp at
   every start, a cost the plain baselines do not have.

Prints a table, the burst's CPU per pod by process (the agent with the
image tools it waits for, the apiserver, etcd; the rest of the machine's:
conmon, runc create and init, the kernel), and ends with ``RESULT key=value ...``.  Everything it started
is stopped by PID and removed on the way out.  Needs root.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.phase import pct  # noqa: E402
from bench.proccpu import cpu_seconds, machine_busy  # noqa: E402
from bench.runc_raw import measure_bare_runc, measure_bare_runc_burst  # noqa: E402
from harness.netns import NETNS_DIR  # noqa: E402
from harness.nodes import Node, NodeCluster  # noqa: E402
from harness.pods import all_running, make_pod, node_ready  # noqa: E402
from machinery.client import Client  # noqa: E402
from machinery.pb import core_pb2  # noqa: E402


def sleeper(name: str, node: Node) -> core_pb2.Pod:
    return make_pod(name, node, {"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                                 "command": ["sleep", "3600"]}, terminationGracePeriodSeconds=1)


class RunningWatch:
    """Records the first time each pod is seen with all containers running."""

    def __init__(self, api: Client) -> None:
        self.api = api
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for ev in self.api.watch(core_pb2.Pod, "default"):
            if ev.object is not None and ev.object.metadata.name not in self.seen and all_running(ev.object):
                self.seen[ev.object.metadata.name] = time.perf_counter()
                self.changed.set()

    async def wait(self, names: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not all(n in self.seen for n in names):
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pods not running: {[n for n in names if n not in self.seen]}")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


async def delete_all(api: Client, names: list[str]) -> None:
    await asyncio.gather(*(api.delete(core_pb2.Pod, n, "default", grace_period=1) for n in names))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods, _ = await api.list(core_pb2.Pod, "default")
        if not pods:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("pods not deleted")


async def measure(api: Client, node: Node, n: int, procs: dict[str, int]) -> dict:
    await node_ready(api, node)
    watch = RunningWatch(api)
    task = asyncio.create_task(watch.run())
    try:
        await api.create(sleeper("warmup", node))
        await watch.wait(["warmup"])
        await delete_all(api, ["warmup"])

        seq = []
        for i in range(n):
            name = f"seq-{i}"
            t0 = time.perf_counter()
            await api.create(sleeper(name, node))
            await watch.wait([name])
            seq.append((watch.seen[name] - t0) * 1000)
        await delete_all(api, [f"seq-{i}" for i in range(n)])
        quiet = await wait_quiet(node)

        names = [f"burst-{i}" for i in range(n)]
        starts: dict[str, float] = {}

        async def create(name: str) -> None:
            starts[name] = time.perf_counter()
            await api.create(sleeper(name, node))
        t0, busy0 = time.perf_counter(), machine_busy()
        cpu0 = {k: cpu_seconds(pid, children=True) for k, pid in procs.items()}
        await asyncio.gather(*(create(x) for x in names))
        await watch.wait(names)
        busy = machine_busy() - busy0
        shares = {k: (cpu_seconds(pid, children=True) - cpu0[k]) * 1000 / n for k, pid in procs.items()}
        elapsed = max(watch.seen[x] for x in names) - t0
        burst = [(watch.seen[x] - starts[x]) * 1000 for x in names]
        await delete_all(api, names)
    finally:
        task.cancel()
    return {"seq": seq, "burst": burst, "burst_elapsed": elapsed, "burst_cpu_ms": busy * 1000 / n, "quiet_s": quiet,
            "shares": shares}


async def wait_quiet(node: Node, timeout: float = 60) -> float:
    """Wait until the node has no pod netns left and this machine is below a third of a core
    busy over 0.5 s; the seconds waited (the teardown of the pods before)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not any(n.startswith(node.pod_prefix) for n in os.listdir(NETNS_DIR)):
            b0 = machine_busy()
            await asyncio.sleep(0.5)
            if machine_busy() - b0 < 0.5 / 3:
                break
        else:
            await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def amain(args) -> dict:
    work = pathlib.Path(tempfile.mkdtemp(prefix="kctlbench-podstart-"))
    try:
        with NodeCluster(work, images={"busybox:latest": "library/busybox:latest"}) as env:
            node = env.add_node("bench", extra=[] if args.seccomp_default else ["--no-seccomp-default"])
            async with Client(env.target, timeout=30, credentials=env.apiserver.credentials) as api:
                procs = {"agent (with its children)": node.proc.pid, "apiserver": env.apiserver.pid,
                         "etcd": env.control_plane.etcd.pid}
                return await measure(api, node, args.pods, procs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--seccomp-default", action=argparse.BooleanOptionalAction, default=True,
                   help="the agent's default (RuntimeDefault for containers that name no profile); "
                        "--no-seccomp-default runs it with Unconfined, the kubelet's own default")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    res = asyncio.run(amain(args))
    runc = measure_bare_runc(args.pods)
    from nodeagent.seccomp import runtime_default
    from nodeagent.security import DEFAULT_CAPS
    runc_seccomp = measure_bare_runc(args.pods, seccomp=runtime_default(list(DEFAULT_CAPS)))
    runc_burst = measure_bare_runc_burst(args.pods)
    runc_burst_seccomp = measure_bare_runc_burst(args.pods, seccomp=runtime_default(list(DEFAULT_CAPS)))
    seq, burst = res["seq"], res["burst"]
    rate = args.pods / res["burst_elapsed"]
    p50, p99 = pct(seq, 50), pct(seq, 99)
    print(f"{'':34} {'p50 ms':>9} {'p99 ms':>9}")
    print(f"{'pod bound -> Running (sequential)':34} {p50:9.1f} {p99:9.1f}")
    print(f"{'pod bound -> Running (burst)':34} {pct(burst, 50):9.1f} {pct(burst, 99):9.1f}")
    print(f"{'bare runc run (true)':34} {runc['p50_ms']:9.1f} {runc['p99_ms']:9.1f}")
    print(f"{'  the same, RuntimeDefault seccomp':34} {runc_seccomp['p50_ms']:9.1f} {runc_seccomp['p99_ms']:9.1f}")
    print(f"ratio pod/runc p50: {p50 / runc['p50_ms']:.1f}x (to runc with the seccomp profile "
          f"{p50 / runc_seccomp['p50_ms']:.1f}x)   burst: {args.pods} pods in "
          f"{res['burst_elapsed']:.2f}s = {rate:.1f} pods/s on one node (after {res['quiet_s']:.1f}s for the "
          f"node to be quiet; machine CPU {res['burst_cpu_ms']:.0f} ms per pod); {args.pods} bare runc run at "
          f"once: {runc_burst['per_s']:.1f}/s (pods/runc {rate / runc_burst['per_s']:.2f}), with the seccomp "
          f"profile {runc_burst_seccomp['per_s']:.1f}/s (pods/runc {rate / runc_burst_seccomp['per_s']:.2f})")
    shares = res["shares"]
    print("burst, CPU per pod: " + ", ".join(f"{k} {v:.1f} ms" for k, v in shares.items())
          + f", the rest (conmon, runc create/init, the kernel, this process) "
          f"{res['burst_cpu_ms'] - sum(shares.values()):.1f} ms")
    print(f"RESULT pods={args.pods} seccomp_default={str(args.seccomp_default).lower()} pod_start_p50_ms={p50:.1f} pod_start_p99_ms={p99:.1f} "
          f"runc_p50_ms={runc['p50_ms']:.1f} runc_p99_ms={runc['p99_ms']:.1f} ratio_p50={p50 / runc['p50_ms']:.2f} "
          f"runc_seccomp_p50_ms={runc_seccomp['p50_ms']:.1f} ratio_p50_seccomp={p50 / runc_seccomp['p50_ms']:.2f} "
          f"burst_p50_ms={pct(burst, 50):.1f} burst_p99_ms={pct(burst, 99):.1f} pods_per_s={rate:.2f} "
          f"burst_cpu_ms_per_pod={res['burst_cpu_ms']:.0f} quiet_wait_s={res['quiet_s']:.1f} "
          f"runc_burst_per_s={runc_burst['per_s']:.1f} ratio_burst={rate / runc_burst['per_s']:.2f} "
          f"runc_burst_seccomp_per_s={runc_burst_seccomp['per_s']:.1f} "
          f"ratio_burst_seccomp={rate / runc_burst_seccomp['per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
