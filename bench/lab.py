"""The one-machine lab, end to end: up time, 30 replicas to Running, a node kill.

    sudo .venv/bin/python bench/lab.py [--trials 3] [--nodes 3] [--replicas 30] [--toleration-seconds N]
                                       [--perf FILE]

Each trial brings up a fresh lab (`deploy.lab.cluster.up`, what `kctl lab up`
runs; its kubeconfig goes to a temporary directory, never ~/.kctl/config),
then:

1. lab up: `kctl lab up` run -> it exits with every node Ready and
   schedulable (includes the CLI's own start, ~0.3 s);
2. apply: one Deployment of N replicas of kctl/echo (the examples/echo.yaml
   pod template: readiness probe, 50m/16Mi requests) created through the API;
   apply -> all N Running, and per pod "pod start" = the pod first seen in our
   watch (ADDED) -> first seen Running (scheduler + agent + image + runc);
   then the same with the image already on every node (Kubernetes' pod
   startup SLI excludes image pulls): scaled to 0, every pod gone, scaled
   back to N -> all N Running ("warm"), with the CPU the whole machine
   spent meanwhile (/proc/stat) and each lab process's share (its own and
   its waited-for children's, /proc/PID/stat): the CPU-seconds divided by
   the cores is the shortest this apply could take on this machine;
3. node kill: `kill_node(node2)` (`kctl lab kill-node`: link down, SIGKILL
   agent and containers); kill -> node2 NotReady, and kill -> N replicas
   Running+Ready on the other nodes again (NotReady + eviction timeout +
   reschedule + start + readiness);
4. `kctl lab down` (always, also on failure, Ctrl-C or SIGTERM).

Per trial it also prints two timelines, first .. last pod: the apply
(created, bound, Running, and the slowest image pull from the agents'
Pulled events) and the failover (node NotReady, pods evicted, replacements
created, bound, Running, Ready).  --toleration-seconds N gives the pods
NoExecute tolerations of unreachable/not-ready nodes for N seconds (as a
Kubernetes user who wants quick failover writes them); without it the lab's
eviction timeout applies.

Times are taken on this process' monotonic clock from one pod watch and a
0.1 s node poll. Prints a line per trial, a summary, and last one line
`RESULT key=value ...` (medians over trials; pod start p50/p99 over all pods
of all trials). Needs root.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.proccpu import cpu_seconds, machine_busy  # noqa: E402
from deploy.lab import cluster, faults  # noqa: E402
from deploy.lab.naming import LabError  # noqa: E402
from kubectlish.edit import mutate_object  # noqa: E402
from machinery import codec  # noqa: E402
from machinery.client import Client  # noqa: E402

KILLED = "node2"
CORES = os.cpu_count() or 1


def deployment(replicas: int, toleration_seconds: int | None = None) -> dict:
    d = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{
                    "name": "echo", "image": "kctl/echo:latest",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
                    "resources": {"requests": {"cpu": "50m", "memory": "16Mi"},
                                  "limits": {"cpu": "200m", "memory": "32Mi"}},
                }]},
            },
        },
    }
    if toleration_seconds is not None:      # how long a pod stays bound to a lost node (tolerationSeconds)
        d["spec"]["template"]["spec"]["tolerations"] = [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": toleration_seconds}
            for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
    return d


async def scale(c: Client, replicas: int) -> None:
    """Set the bench Deployment's spec.replicas as `kctl` sets a field: get, change, update, again on
    a conflict (kubectlish.edit.mutate_object)."""
    await mutate_object(c, "Deployment", "bench", "default", lambda d: setattr(d.spec, "replicas", replicas))


def cpu_snapshot(lab_name: str) -> tuple[float, dict[str, float]]:
    """(machine busy CPU-s, {lab process: its CPU-s}) now; the lab's processes from its state."""
    from deploy.lab import naming
    from deploy.lab.state import StateStore
    per = {}
    for name, rec in (StateStore(naming.state_dir(lab_name)).load().get("procs") or {}).items():
        if rec.get("pid") and not name.startswith("supervisor"):
            try:
                per[name] = cpu_seconds(rec["pid"], children=True)
            except (OSError, ValueError):
                pass
    return machine_busy(), per


def cpu_used(before: tuple[float, dict], after: tuple[float, dict]) -> tuple[float, dict[str, float]]:
    return after[0] - before[0], {n: after[1][n] - before[1][n] for n in after[1] if n in before[1]}


def _ready(p) -> bool:
    return (p.status.phase == "Running" and not p.metadata.HasField("deletion_timestamp")
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions))


def _node_ready(n) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)


async def run_workload(server: str, lab_name: str, replicas: int, timeout: float = 120.0,
                       toleration_seconds: int | None = None, perf: str | None = None) -> dict:
    """Steps 2 and 3 of a trial; returns their figures (seconds).  perf: a file that `perf record
    -a -g` writes during the warm apply (bench/perfsplit.py reads it)."""
    from deploy.lab.cluster import admin_credentials
    async with Client(server, timeout=10, credentials=admin_credentials(lab_name)) as c:
        _, rv = await c.list("Pod", "default", label_selector="app=bench")
        seen: dict[str, float] = {}
        running: dict[str, float] = {}
        ready: dict[str, float] = {}
        bound: dict[str, float] = {}
        evicted: dict[str, float] = {}
        pods: dict[str, object] = {}

        async def watch():
            async for ev in c.watch("Pod", "default", resource_version=rv, label_selector="app=bench"):
                now = time.monotonic()
                if ev.object is None:
                    continue
                uid = ev.object.metadata.uid
                if ev.type == "DELETED":
                    pods.pop(uid, None)
                    continue
                pods[uid] = ev.object
                seen.setdefault(uid, now)
                if ev.object.spec.node_name:
                    bound.setdefault(uid, now)
                if ev.object.metadata.HasField("deletion_timestamp"):
                    evicted.setdefault(uid, now)
                if ev.object.status.phase == "Running":
                    running.setdefault(uid, now)
                if _ready(ev.object):
                    ready.setdefault(uid, now)

        watcher = asyncio.create_task(watch())

        async def all_running(t0: float) -> set:
            """The first REPLICAS pods created after t0 once all of them are Running."""
            while time.monotonic() - t0 < timeout:
                fresh = [u for u in running if seen[u] >= t0]
                if len(fresh) >= replicas:
                    return set(fresh[:replicas])
                await asyncio.sleep(0.05)
            raise LabError(f"only {sum(seen[u] >= t0 for u in running)}/{replicas} pods Running "
                           f"after {timeout:.0f}s")

        async def all_ready() -> None:
            while time.monotonic() - t0 < 3 * timeout:
                if sum(_ready(p) for p in pods.values()) >= replicas:
                    return
                await asyncio.sleep(0.05)
            raise LabError(f"not all {replicas} pods Ready")

        recorder = None
        try:
            t0 = time.monotonic()
            await c.create(codec.from_dict(deployment(replicas, toleration_seconds)))
            first = await all_running(t0)
            all_running_s = max(running[u] for u in first) - t0
            starts = [running[u] - seen[u] for u in first]
            apply_tl = {what: (min(d[u] for u in first) - t0, max(d[u] for u in first) - t0)
                        for what, d in (("created", seen), ("bound", bound), ("Running", running))}
            events, _ = await c.list("Event", "default")     # each fresh node pulls the image once
            pulls = [float(m.group(1)) for e in events if e.reason == "Pulled"
                     and (m := re.search(r" in ([0-9.]+)s$", e.message))]
            await all_ready()

            # The same apply with the image on every node (Kubernetes' pod startup SLI excludes image
            # pulls): scale to 0, wait until every pod is gone, scale back to REPLICAS.
            await scale(c, 0)
            while pods and time.monotonic() - t0 < 3 * timeout:
                await asyncio.sleep(0.05)
            if perf:
                recorder = await record_machine(perf)
            cpu_before = cpu_snapshot(lab_name)
            t_warm = time.monotonic()
            await scale(c, replicas)
            warm = await all_running(t_warm)
            warm_cpu = cpu_used(cpu_before, cpu_snapshot(lab_name))
            await stop_recording(recorder)
            warm_running_s = max(running[u] for u in warm) - t_warm
            warm_starts = [running[u] - seen[u] for u in warm]
            warm_tl = {what: (min(d[u] for u in warm) - t_warm, max(d[u] for u in warm) - t_warm)
                       for what, d in (("created", seen), ("bound", bound), ("Running", running))}
            await all_ready()

            t_kill = time.monotonic()
            await asyncio.to_thread(faults.kill_node, lab_name, KILLED)
            kill_cmd = time.monotonic() - t_kill
            notready = back = None
            while time.monotonic() - t_kill < timeout and (notready is None or back is None):
                if notready is None and not _node_ready(await c.get("Node", KILLED)):
                    notready = time.monotonic() - t_kill
                if back is None and sum(_ready(p) and p.spec.node_name != KILLED
                                        for p in pods.values()) >= replicas:
                    back = time.monotonic() - t_kill
                await asyncio.sleep(0.1)
            if notready is None or back is None:
                raise LabError(f"after the kill: NotReady {notready}, all Ready again {back} "
                               f"(gave up after {timeout:.0f}s)")
            new = [u for u in seen if seen[u] > t_kill]

            def span(times: dict, uids) -> tuple[float, float]:
                ts = [times[u] - t_kill for u in uids if u in times]
                return (min(ts), max(ts)) if ts else (float("nan"), float("nan"))
            timeline = {"node NotReady (0.1 s poll)": (notready, notready),
                        "pods evicted (deletionTimestamp)": span(evicted, [u for u in evicted if evicted[u] > t_kill]),
                        "replacements created": span(seen, new), "replacements bound": span(bound, new),
                        "replacements Running": span(running, new), "replacements Ready": span(ready, new)}
            return {"all_running": all_running_s, "starts": starts, "warm_running": warm_running_s,
                    "warm_starts": warm_starts, "warm_timeline": warm_tl, "warm_cpu": warm_cpu, "kill_cmd": kill_cmd,
                    "notready": notready, "back": back, "timeline": timeline, "apply_timeline": apply_tl,
                    "pull_max": max(pulls, default=float("nan")),
                    "running_to_ready": [ready[u] - running[u] for u in first if u in ready]}
        finally:
            await stop_recording(recorder)
            watcher.cancel()
            try:
                await watcher
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - ended either way
                pass


async def record_machine(path: str):
    """`perf record` of every CPU with call graphs into path, until SIGINT; started once it runs."""
    proc = await asyncio.create_subprocess_exec("perf", "record", "-a", "-g", "-F", "499", "-q", "-o", path,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)                 # perf has opened its events
    if proc.returncode is not None:
        raise LabError(f"perf record exited with {proc.returncode} (is it installed? Debian: linux-perf)")
    return proc


async def stop_recording(proc) -> None:
    """End a record_machine recording (perf writes its file on SIGINT); nothing without one."""
    if proc is not None and proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        await proc.wait()


def trial(name: str, nodes: int, replicas: int, kubeconfig: str, toleration_seconds: int | None = None,
          perf: str | None = None) -> dict:
    """One lab: up and down through the CLI (as a user runs them; also keeps
    pyroute2's forking netns helpers out of this process, which holds gRPC
    threads), the workload through the API in-process."""
    import subprocess
    from deploy.lab import Lab, LabSpec
    if Lab(LabSpec(name=name, nodes=nodes)).exists():  # never tear down a lab we did not make
        raise LabError(f"lab {name} already exists; pick another --name")
    kctl = str(pathlib.Path(sys.executable).parent / "kctl")
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    t0 = time.monotonic()
    try:
        res = subprocess.run([kctl, "lab", "up", "--name", name, "--nodes", str(nodes)], env=env,
                             capture_output=True, text=True, timeout=300)
        up = time.monotonic() - t0
        if res.returncode != 0:
            raise LabError(f"kctl lab up failed:\n{res.stdout}{res.stderr}")
        m = re.search(r"is up in ([0-9.]+)s", res.stdout)
        out = asyncio.run(run_workload(cluster.load_cluster(name)["apiserver"], name, replicas,
                                       toleration_seconds=toleration_seconds, perf=perf))
        out["up"] = up
        out["up_internal"] = float(m.group(1)) if m else up
        return out
    finally:
        t_down = time.monotonic()
        res = subprocess.run([kctl, "lab", "down", "--name", name], env=env, capture_output=True,
                             text=True, timeout=120)
        if res.returncode != 0:
            print(f"kctl lab down failed: {res.stdout}{res.stderr}", file=sys.stderr)
        print(f"    (lab down {time.monotonic() - t_down:.1f}s)", flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--replicas", type=int, default=30)
    p.add_argument("--name", default=f"b{os.getpid() % 100000}", help="lab name (1-8 of [a-z0-9])")
    p.add_argument("--toleration-seconds", type=int, default=None,
                   help="pods tolerate an unreachable/not-ready node this long (default: no toleration, "
                        "the lab's eviction timeout applies)")
    p.add_argument("--perf", metavar="FILE", default=None,
                   help="record the first trial's warm apply with `perf record -a -g` into FILE "
                        "(then: perf script -i FILE -F comm,pid,tid,ip,sym,dso | bench/perfsplit.py)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/lab.py needs root (it builds a lab)", file=sys.stderr)
        return 2
    if args.nodes < 2:
        print("--nodes must be at least 2 (one is killed)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: clauses
    tmp = tempfile.mkdtemp(prefix="kctl-bench-lab-")
    kubeconfig = os.path.join(tmp, "config")
    results = []
    try:
        print(f"lab bench: {args.trials} trial(s), {args.nodes} nodes, {args.replicas} replicas, "
              f"kill {KILLED} (node grace {cluster.NODE_GRACE:g}s + eviction {cluster.POD_EVICTION:g}s"
              + (f"; pods tolerate it {args.toleration_seconds}s" if args.toleration_seconds is not None else "")
              + ")")
        print(f"{'trial':<6}{'up s':>7}{'all Running s':>15}{'warm s':>8}{'start p50 ms':>14}{'p99 ms':>9}"
              f"{'NotReady s':>12}{'all Ready s':>13}")
        for i in range(1, args.trials + 1):
            r = trial(args.name, args.nodes, args.replicas, kubeconfig, args.toleration_seconds,
                      args.perf if i == 1 else None)
            results.append(r)
            print(f"{i:<6}{r['up']:>7.2f}{r['all_running']:>15.2f}{r['warm_running']:>8.2f}"
                  f"{pct(r['starts'], 50) * 1000:>14.0f}"
                  f"{pct(r['starts'], 99) * 1000:>9.0f}{r['notready']:>12.2f}{r['back']:>13.2f}", flush=True)
            print("       apply timeline, s after the create (first .. last pod): " + "; ".join(
                f"{k} {a:.2f}..{b:.2f}" for k, (a, b) in r["apply_timeline"].items())
                + f"; slowest image pull (Pulled event) {r['pull_max']:.2f}s", flush=True)
            print("       warm apply (image on every node), s after the scale-up: " + "; ".join(
                f"{k} {a:.2f}..{b:.2f}" for k, (a, b) in r["warm_timeline"].items()), flush=True)
            busy, per = r["warm_cpu"]
            top = sorted(per.items(), key=lambda kv: -kv[1])
            print(f"       warm apply CPU: machine {busy:.2f} CPU-s = {busy / args.replicas * 1000:.0f} ms per pod "
                  f"= {busy / CORES:.2f} s of all {CORES} cores; per pod: " + ", ".join(
                      f"{n} {v / args.replicas * 1000:.1f}" for n, v in top if v > 0)
                  + f", the rest (conmon, runc, containers, kernel, others) "
                  f"{(busy - sum(per.values())) / args.replicas * 1000:.1f} ms", flush=True)
            print("       failover timeline, s after the kill (first .. last pod): " + "; ".join(
                f"{k} {a:.2f}..{b:.2f}" for k, (a, b) in r["timeline"].items()), flush=True)
    finally:
        try:
            os.unlink(kubeconfig)
        except FileNotFoundError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    med = lambda key: statistics.median(r[key] for r in results)  # noqa: E731
    worst = lambda key: max(r[key] for r in results)  # noqa: E731
    starts = [s for r in results for s in r["starts"]]
    to_ready = [s for r in results for s in r["running_to_ready"]]
    warm_starts = [s for r in results for s in r["warm_starts"]]
    print(f"\nmedian (worst) over {len(results)} trial(s): lab up {med('up'):.2f}s ({worst('up'):.2f}); "
          f"apply -> {args.replicas} Running {med('all_running'):.2f}s ({worst('all_running'):.2f}); "
          f"with the image on every node {med('warm_running'):.2f}s ({worst('warm_running'):.2f}), "
          f"which used {statistics.median(r['warm_cpu'][0] for r in results) / CORES:.2f}s of all {CORES} cores; "
          f"pod start p50 {pct(starts, 50) * 1000:.0f} ms, p99 {pct(starts, 99) * 1000:.0f} ms "
          f"(warm {pct(warm_starts, 50) * 1000:.0f}, {pct(warm_starts, 99) * 1000:.0f} ms); "
          f"Running -> Ready p50 {pct(to_ready, 50) * 1000:.0f} ms, p99 {pct(to_ready, 99) * 1000:.0f} ms; "
          f"kill -> NotReady {med('notready'):.2f}s ({worst('notready'):.2f}); "
          f"kill -> all Ready {med('back'):.2f}s ({worst('back'):.2f})")
    print(f"RESULT trials={len(results)} nodes={args.nodes} replicas={args.replicas} "
          f"toleration_seconds={'none' if args.toleration_seconds is None else args.toleration_seconds} "
          f"lab_up_s={med('up'):.2f} lab_up_max_s={worst('up'):.2f} lab_up_internal_s={med('up_internal'):.2f} "
          f"apply_all_running_s={med('all_running'):.2f} image_pull_max_s={med('pull_max'):.2f} "
          f"apply_warm_all_running_s={med('warm_running'):.2f} apply_warm_all_running_max_s={worst('warm_running'):.2f} "
          f"warm_pod_start_p50_ms={pct(warm_starts, 50) * 1000:.0f} warm_pod_start_p99_ms={pct(warm_starts, 99) * 1000:.0f} "
          f"warm_cpu_per_pod_ms={statistics.median(r['warm_cpu'][0] for r in results) / args.replicas * 1000:.0f} "
          f"warm_cpu_floor_s={statistics.median(r['warm_cpu'][0] for r in results) / CORES:.2f} cores={CORES} "
          f"pod_start_p50_ms={pct(starts, 50) * 1000:.0f} pod_start_p99_ms={pct(starts, 99) * 1000:.0f} "
          f"running_to_ready_p50_ms={pct(to_ready, 50) * 1000:.0f} running_to_ready_p99_ms={pct(to_ready, 99) * 1000:.0f} "
          f"kill_notready_s={med('notready'):.2f} kill_notready_max_s={worst('notready'):.2f} "
          f"kill_all_ready_s={med('back'):.2f} kill_all_ready_max_s={worst('back'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
