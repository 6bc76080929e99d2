"""Requests lost while a Deployment rolls: HTTP clients inside the lab, through a ClusterIP and a NodePort.

    sudo .venv/bin/python bench/rollout_traffic.py [--replicas 30] [--requests 5000] [--name rt123]

Brings up a fresh 3-node lab (`kctl lab up`, kubeconfig in a temporary
directory), or uses an existing one (``measure()``, which
tests/e2e/test_lab_rollout_traffic.py calls on its own lab), then:

1. a Deployment ``roll`` of N replicas of a web server as a user would
   deploy one (maxSurge 25%, maxUnavailable 25%, NO preStop hook) behind a
   NodePort Service ``roll``, and a client pod on node1.  The server is
   busybox ``httpd`` serving a static page with the pod's name (``SERVER``):
   a real server that accepts from a listen backlog (9) and forks no shell
   per request, unlike kctl/echo's ``nc -ll`` (backlog 2, a shell per
   connection), whose full queue dropped SYNs and readiness probes on a
   loaded machine.  Requests as a user would write them (100m CPU, 16Mi),
   readiness ``httpGet /`` every 2 s with a 3 s timeout;
2. two clients, each a Python process entered into a lab network namespace
   (``nsenter --net``; the traffic never leaves the lab), 8 threads sending
   ``GET /`` on a new connection each, 10 s timeout:
   * ``clusterip``: from the client pod's netns to the Service's ClusterIP;
   * ``nodeport``: from node1's netns to node2's IP and the NodePort (another
     node's proxy, then possibly a third node's pod);
3. rolls the Deployment (a new template annotation, as `kubectl rollout
   restart`), waits until the rollout is complete (every replica updated and
   available, no old replica left), and rolls again (at most 20 times) until
   each client sent at least ``--requests`` requests during rollouts;
4. stops the clients and counts: requests and failures (any exception, any
   answer other than ``HTTP/1.x 200``) in total and during rollouts, and
   reports the fewest ready endpoints the Service's EndpointSlices had (and
   when they had none: the proxies then refuse connections).

Prints the counts, the rollout times, the first failures if any, and last one
line ``RESULT key=value ...``.  The lab goes down at the end whatever happens.
Needs root.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from machinery import codec  # noqa: E402
from machinery.client import Client  # noqa: E402

NAME = "roll"
CLIENT_NODE, NODEPORT_NODE = "node1", "node2"
THREADS = 8

CLIENT = r'''
import json, socket, sys, threading, time
host, port, nthreads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stop, lock, results = threading.Event(), threading.Lock(), []
REQ = b"GET / HTTP/1.0\r\nHost: roll\r\n\r\n"
def one():
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(REQ)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    if not (data.startswith(b"HTTP/1.") and data[8:13] == b" 200 "):
        raise ValueError("bad answer %r" % data[:60])
def loop():
    while not stop.is_set():
        t = time.time()
        try:
            one()
            err = ""
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, str(e)[:100])
        with lock:
            results.append((t, err))
threads = [threading.Thread(target=loop, daemon=True) for _ in range(nthreads)]
for th in threads:
    th.start()
print("started", flush=True)
for line in sys.stdin:
    if line.strip() != "count":
        break
    with lock:
        print(len(results), flush=True)
stop.set()
for th in threads:
    th.join(15)
with lock:
    print(json.dumps(results), flush=True)
'''


# The served application: busybox httpd in the foreground, one static page with the pod's name.  The
# shell stays PID 1 (httpd as PID 1 would ignore SIGTERM) and exits on SIGTERM at once, as most
# servers do: requests still in flight then would be reset, which the agent's drain prevents.
SERVER = ('mkdir -p /tmp/www; echo "$(hostname)" > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & pid=$!; '
          "trap 'kill $pid 2>/dev/null; exit 0' TERM INT; wait $pid")


def manifests(replicas: int) -> list[dict]:
    labels = {"app": NAME}
    container = {"name": "web", "image": "busybox:latest", "command": ["sh", "-c", SERVER],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2,
                                    "timeoutSeconds": 3},
                 "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": "default"},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": "default"},
         "spec": {"type": "NodePort", "selector": labels, "ports": [{"name": "http", "port": 80,
                                                                      "targetPort": "http"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{NAME}-client", "namespace": "default",
                                                         "labels": {"app": f"{NAME}-client"}},
         "spec": {"nodeName": CLIENT_NODE, "containers": [dict(container, name="client")]}},
    ]


def _ready(p) -> bool:
    return p.status.phase == "Running" and not p.metadata.HasField("deletion_timestamp") and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions)


async def _until(what: str, check, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def _rollout_complete(c: Client, generation: int, replicas: int) -> bool:
    d = await c.get("Deployment", NAME, "default")
    st = d.status
    if st.observed_generation < generation or st.updated_replicas != replicas or st.replicas != replicas \
            or st.available_replicas != replicas:
        return False
    pods, _ = await c.list("Pod", "default", label_selector=f"app={NAME}")
    live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
    return len(live) == replicas and all(_ready(p) for p in live)


def _start_client(netns: str, host: str, port: int) -> subprocess.Popen:
    p = subprocess.Popen(["nsenter", f"--net={netns}", "--", sys.executable, "-c", CLIENT, host, str(port),
                          str(THREADS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "started":
        p.kill()
        raise RuntimeError(f"client in {netns} did not start")
    return p


def _sent(p: subprocess.Popen) -> int:
    """How many requests the client has made so far."""
    p.stdin.write("count\n")
    p.stdin.flush()
    return int(p.stdout.readline())


def _stop_client(p: subprocess.Popen) -> list:
    """Tell the client to stop (its requests in flight end), then read its results."""
    try:
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    return json.loads(out.strip().splitlines()[-1])


def _count(results: list, windows: list[tuple[float, float]]) -> dict:
    during = [r for r in results if any(a <= r[0] <= b for a, b in windows)]
    failed = [r for r in results if r[1]]
    return {"total": len(results), "failed": len(failed), "during": len(during),
            "failed_during": sum(1 for r in during if r[1]), "first_failures": failed[:5]}


async def measure(server: str, lab_name: str, replicas: int = 30, min_requests: int = 5000,
                  max_rollouts: int = 20, log=print) -> dict:
    """Run the workload on lab LAB_NAME (its apiserver at SERVER); see the module docstring."""
    from deploy.lab import Lab
    from deploy.lab.naming import netns_path
    from deploy.lab.cluster import admin_credentials
    lab = Lab.load(lab_name)
    async with Client(server, timeout=20, credentials=admin_credentials(lab_name)) as c:
        for m in manifests(replicas):
            await c.create(codec.from_dict(m))
        t = time.monotonic()
        await _until(f"{replicas} replicas ready", lambda: _rollout_complete(c, 1, replicas), 180)
        client_pod = await _until("the client pod", lambda: _client_pod(c), 60)
        log(f"{replicas} replicas ready in {time.monotonic() - t:.1f}s")
        svc = await c.get("Service", NAME, "default")
        await _until("30 ready endpoints in the slices", lambda: _ready_endpoints(c, replicas), 30)
        node_ip = lab.node(NODEPORT_NODE).ip
        clients = {
            "clusterip": _start_client(netns_path(lab.node(CLIENT_NODE).pod_netns_prefix + client_pod.metadata.uid),
                                       svc.spec.cluster_ip, 80),
            "nodeport": _start_client(lab.node(CLIENT_NODE).netns_path, node_ip, svc.spec.ports[0].node_port),
        }
        windows, durations, results, ready = [], [], {}, []
        watcher = asyncio.get_running_loop().create_task(_watch_ready(c, ready))
        try:
            await asyncio.sleep(1.0)
            during = dict.fromkeys(clients, 0)
            for i in range(max_rollouts):
                d = await c.get("Deployment", NAME, "default")
                d.spec.template.metadata.annotations["kctl.io/restartedAt"] = f"{time.time():.3f}"
                before = {k: _sent(p) for k, p in clients.items()}
                t0, m0 = time.time(), time.monotonic()
                d = await c.update(d)
                await _until("the rollout", lambda: _rollout_complete(c, d.metadata.generation, replicas), 300)
                windows.append((t0, time.time()))
                durations.append(time.monotonic() - m0)
                for k, p in clients.items():
                    during[k] += _sent(p) - before[k]
                log(f"rollout {i + 1}: complete in {durations[-1]:.1f}s; requests during rollouts so far: "
                    + ", ".join(f"{k} {n}" for k, n in during.items()))
                if min(during.values()) >= min_requests:
                    break
            await asyncio.sleep(1.0)
        finally:
            watcher.cancel()
            for p in clients.values():        # both stop at once
                p.stdin.write("stop\n")
                p.stdin.flush()
            for k, p in clients.items():
                results[k] = _stop_client(p)
    out = {"rollouts": durations, "windows": windows, "min_ready": min((n for _, n in ready), default=None),
           "none_ready": [t for t, n in ready if n == 0]}
    for k, res in results.items():
        out[k] = _count(res, windows)
    return out


async def _watch_ready(c: Client, seen: list) -> None:
    """Append (time, ready endpoints of the Service) after every change of its EndpointSlices: when
    readiness probes time out on an overloaded machine, the ready set can drop to 0, and then the
    proxies refuse new connections (REJECT) until probes pass again."""
    slices = {}
    async for ev in c.watch("EndpointSlice", "default", label_selector=f"kubernetes.io/service-name={NAME}"):
        if ev.type == "BOOKMARK" or ev.object is None:
            continue
        if ev.type == "DELETED":
            slices.pop(ev.object.metadata.name, None)
        else:
            slices[ev.object.metadata.name] = ev.object
        seen.append((time.time(), sum(1 for es in slices.values() for e in es.endpoints if e.conditions.ready)))


async def _client_pod(c: Client):
    p = await c.get("Pod", f"{NAME}-client", "default")
    return p if p.status.phase == "Running" else None


async def _ready_endpoints(c: Client, n: int) -> bool:
    slices, _ = await c.list("EndpointSlice", "default", label_selector=f"kubernetes.io/service-name={NAME}")
    return sum(1 for es in slices for e in es.endpoints if e.conditions.ready) == n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=30)
    ap.add_argument("--requests", type=int, default=5000, help="per client, sent during rollouts")
    ap.add_argument("--name", default=f"rt{os.getpid() % 100000}", help="lab name (1-8 of [a-z0-9])")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/rollout_traffic.py needs root (it builds a lab)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from deploy.lab import Lab, LabSpec, cluster
    if Lab(LabSpec(name=args.name, nodes=3)).exists():
        print(f"lab {args.name} already exists; pick another --name", file=sys.stderr)
        return 2
    kctl = str(pathlib.Path(sys.executable).parent / "kctl")
    tmp = tempfile.mkdtemp(prefix="kctl-bench-roll-")
    env = {**os.environ, "KUBECONFIG": os.path.join(tmp, "config")}
    try:
        res = subprocess.run([kctl, "lab", "up", "--name", args.name, "--nodes", "3"], env=env,
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            print(f"kctl lab up failed:\n{res.stdout}{res.stderr}", file=sys.stderr)
            return 1
        r = asyncio.run(measure(cluster.load_cluster(args.name)["apiserver"], args.name, args.replicas,
                                args.requests))
    finally:
        subprocess.run([kctl, "lab", "down", "--name", args.name], env=env, capture_output=True, text=True,
                       timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
    report(r)
    return 0 if all(r[k]["failed"] == 0 for k in ("clusterip", "nodeport")) else 1


def report(r: dict, out=print) -> None:
    for k in ("clusterip", "nodeport"):
        c = r[k]
        out(f"{k:<10} {c['total']:>6} requests ({c['during']} during rollouts), {c['failed']} failed "
            f"({c['failed_during']} during rollouts)")
        for t, err in c["first_failures"]:
            out(f"           failure at {t:.3f}: {err}")
    out("rollouts   " + ", ".join(f"{d:.1f}s" for d in r["rollouts"]))
    out(f"ready endpoints: at least {r['min_ready']}"
        + (f"; none at {', '.join(f'{t:.3f}' for t in r['none_ready'][:10])}" if r["none_ready"] else ""))
    out(f"RESULT clusterip_requests={r['clusterip']['total']} clusterip_during={r['clusterip']['during']} "
        f"clusterip_failed={r['clusterip']['failed']} nodeport_requests={r['nodeport']['total']} "
        f"nodeport_during={r['nodeport']['during']} nodeport_failed={r['nodeport']['failed']} "
        f"rollouts={len(r['rollouts'])} rollout_s_max={max(r['rollouts']):.1f}")


if __name__ == "__main__":
    sys.exit(main())
