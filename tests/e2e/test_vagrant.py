"""The Vagrant lab, really booted: 1 control plane VM + 2 workers on QEMU TCG, offline.

One test, in phases, with the time of each printed (the whole suite must stay
under 30 minutes in CI; on this project's 2-core machines the cycle takes
several minutes):

1. `down` first (a crashed earlier run leaves nothing in the way), then
   `python -m deploy.vagrant up --workers 2`: the cached box (built when its
   inputs changed), libvirt, the isolated networks, `vagrant up`, and
   provisioning through deploy/systemd's units inside the VMs.
2. Isolation: every libvirt network the lab defined has no <forward>, DNS
   off; the guests have no default route; QEMU runs with a 256 MiB TB cache.
3. From this host, over the isolated cluster network, `kctl --server
   CP:6443`: both workers Ready; without credentials the API (HTTPS 401,
   gRPC handshake refused), etcd's client port and a node agent's port
   serve nothing; `kctl apply` a Deployment of 4 replicas
   (kctl/echo from the control plane's registry), all Ready.
4. `virsh destroy` the worker holding most of them; the node goes NotReady,
   its pods are evicted and all 4 replicas are Ready on the other worker.
5. `down`, and nothing of the lab is left: no domain, network, storage pool
   or volume, no libvirt iptables chain, no daemon it started.

Skipped, with the reason, when the machine cannot run VMs (not root, or a
tool missing: deploy/vagrant/install-host.sh installs them, or under 5 GiB
free) or when KCTL_VAGRANT_TEST=0 turns it off. scripts/test.sh runs it
alongside the rest of the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.vagrant import cycle, host
from tests.e2e.lab_fixtures import wait_for as lab_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

KCTL = str(Path(sys.executable).parent / "kctl")
SKIP = cycle.cannot_run_reason()
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 4
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      containers:
      - name: echo
        image: kctl/echo:latest
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 2
"""


class Phases:
    """Phase times, printed as they end (outside pytest's capture) and at the end."""

    def __init__(self, capsys):
        self.capsys = capsys
        self.times: dict[str, float] = {}

    def done(self, name: str, seconds: float) -> None:
        self.times[name] = seconds
        with self.capsys.disabled():
            print(f"\n[vagrant e2e] {name}: {seconds:.0f}s", flush=True)


def admin_env() -> dict:
    """The host's admin kubeconfig of the Vagrant cluster (made by deploy/vagrant/pki.py)."""
    return {**os.environ, "KUBECONFIG": str(cycle.PKI_DIR / "pki" / "admin.conf")}


def kctl(server: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
    res = subprocess.run([KCTL, "--server", server, *args], capture_output=True, text=True,
                         timeout=timeout, input=stdin, env=admin_env())
    if res.returncode != 0:
        raise AssertionError(f"kctl {' '.join(args)} exited {res.returncode}: {res.stdout}{res.stderr}")
    return res.stdout


def items(server: str, kind: str) -> list[dict]:
    try:
        return json.loads(kctl(server, "get", kind, "-o", "json", timeout=30))["items"]
    except (AssertionError, subprocess.TimeoutExpired, ValueError):
        return []   # the apiserver of a TCG control plane may be slow to answer: ask again


def ready(obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in obj.get("status", {}).get("conditions", []))


def wait_for(what: str, check, timeout: float):
    """The e2e waiter, polling every 3 s (the VMs are slow)."""
    return lab_wait_for(what, check, timeout, interval=3)


def ready_pods(server: str) -> dict[str, str]:
    """name -> node of the echo pods that are Ready (and not being deleted)."""
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in items(server, "pods")
            if p["metadata"].get("labels", {}).get("app") == "echo"
            and not p["metadata"].get("deletionTimestamp") and ready(p)}


def guest(machine: str, command: str) -> str:
    res = cycle.vagrant("ssh", machine, "-c", command, check=False, capture=True, timeout=120)
    assert res.returncode == 0, f"vagrant ssh {machine} -c {command!r}: {res.stdout}{res.stderr}"
    return res.stdout


def qemu_args() -> list[str]:
    """The -accel value of every QEMU process running a VM of the lab."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and any(a.startswith(b"guest=" + host.PREFIX.encode())
                                                                   for a in argv):
            found += [argv[i + 1].decode() for i, a in enumerate(argv[:-1]) if a == b"-accel"]
    return found


def diagnose(server: str) -> None:
    """What a failed run needs to be understood (printed: pytest shows it with the failure)."""
    print(subprocess.run([KCTL, "--server", server, "get", "nodes,pods", "-o", "wide"], env=admin_env(),
                         capture_output=True,
                         text=True, timeout=60).stdout)
    for machine in ("worker1", "worker2", "cp"):
        res = cycle.vagrant("ssh", machine, "-c", "sudo journalctl -n 40 --no-pager -u 'kctl-*'", check=False,
                            capture=True, timeout=120)
        print(f"--- {machine}\n{res.stdout}{res.stderr}")


def attacks(cp: str, worker: str) -> dict[str, object]:
    """What a machine on the cluster network gets without credentials
    (issue 14): the API over HTTPS and gRPC, etcd's client port (TLS with
    its own CA and client certificates required), a node agent's port."""
    import ssl
    import urllib.error
    import urllib.request

    import grpc

    from machinery.pb import api_pb2, api_pb2_grpc
    ca = (cycle.PKI_DIR / "pki" / "ca.crt").read_bytes()
    out: dict[str, object] = {}
    try:
        urllib.request.urlopen(f"https://{cp}:8080/api/v1/pods", timeout=20,
                               context=ssl.create_default_context(cadata=ca.decode()))
        out["https list pods"] = 200
    except urllib.error.HTTPError as exc:
        out["https list pods"] = exc.code
    with grpc.secure_channel(f"{cp}:6443", grpc.ssl_channel_credentials(ca)) as ch:
        try:
            api_pb2_grpc.ApiStub(ch).List(api_pb2.ListRequest(kind="Pod"), timeout=20)
            out["grpc list pods"] = "served"
        except grpc.RpcError as exc:
            out["grpc list pods"] = exc.code().name
    anyone = ssl.create_default_context()
    anyone.check_hostname, anyone.verify_mode = False, ssl.CERT_NONE     # an attacker trusts anything
    for label, url in (("etcd range", f"https://{cp}:2379/v3/kv/range"),
                       ("agent exec", f"https://{worker}:10250/")):
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b'{"key": "AA==", "range_end": "AA=="}'),
                                   timeout=20, context=anyone)
            out[label] = "served"
        except urllib.error.HTTPError as exc:
            out[label] = exc.code
        except (urllib.error.URLError, ssl.SSLError, ConnectionError, OSError):
            out[label] = "refused"           # no client certificate: the TLS handshake fails
    return out


def leftovers() -> dict[str, list[str]]:
    left = {"chains": host.iptables_chains(), "daemons": [p.name for p in (host.STATE / "run").glob("*.pid")
                                                         if host._pid_alive(p)]}
    if host.libvirt_up():
        left.update(domains=host.domains(), networks=host.networks(), pools=host.pools())
    left["pool files"] = [p.name for p in (host.STATE / "pool").glob("*")]
    return {k: v for k, v in left.items() if v}


@pytest.mark.skipif(SKIP is not None, reason=f"Vagrant lab not run: {SKIP}")
def test_vagrant_cluster_survives_losing_a_worker(capsys):
    phases = Phases(capsys)
    server = f"{host.Subnets.from_env().cluster.network_address + 10}:6443"
    cycle.down(log=print)
    chains_before = host.iptables_chains()
    try:
        t0 = time.monotonic()
        times = cycle.up(workers=2, log=print)
        for name, seconds in times.items():
            phases.done(f"up: {name}", seconds)

        # Isolation, as built and as running.
        for net in (host.MGMT_NET, host.CLUSTER_NET):
            assert host.isolation_problems(host.virsh("net-dumpxml", net)) == [], net
        for machine in ("cp", "worker1", "worker2"):
            out = guest(machine, "ip -4 route show default; grep -m1 -o -w sse4_2 /proc/cpuinfo || true")
            assert "default" not in out, f"{machine} has a default route: {out}"
            assert "sse4_2" in out, f"{machine}: no x86-64-v2 CPU (numpy needs it): {out}"
        accels = [a for a in qemu_args() if "tcg" in a]
        assert accels == ["tcg,tb-size=256"] * 3, accels

        t0 = time.monotonic()
        wait_for("worker1 and worker2 Ready", lambda: {n["metadata"]["name"] for n in items(server, "nodes")
                                                       if ready(n)} >= {"worker1", "worker2"}, 300)
        cp_ip, worker_ip = server.rsplit(":", 1)[0], next(
            a["address"] for n in items(server, "nodes") if n["metadata"]["name"] == "worker1"
            for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        assert attacks(cp_ip, worker_ip) == {"https list pods": 401, "grpc list pods": "UNAVAILABLE",
                                             "etcd range": "refused", "agent exec": "refused"}
        kctl(server, "apply", "-f", "-", stdin=DEPLOYMENT, timeout=120)
        pods = wait_for("4 echo replicas Ready", lambda: (lambda p: p if len(p) == 4 else None)(ready_pods(server)),
                        600)
        phases.done("apply: 4 replicas Ready", time.monotonic() - t0)

        nodes = sorted(pods.values())
        victim = max(("worker1", "worker2"), key=nodes.count)
        survivor = "worker2" if victim == "worker1" else "worker1"
        t0 = time.monotonic()
        host.kill_node(victim)
        moved = wait_for(f"4 echo replicas Ready on {survivor}",
                         lambda: (lambda p: p if len(p) == 4 and set(p.values()) == {survivor} else None)(
                             ready_pods(server)), 600)
        phases.done(f"failover: {victim} destroyed -> 4 Ready on {survivor}", time.monotonic() - t0)
        assert set(moved.values()) == {survivor}
        victim_node = next(n for n in items(server, "nodes") if n["metadata"]["name"] == victim)
        assert not ready(victim_node)
    except BaseException:
        diagnose(server)
        raise
    finally:
        t0 = time.monotonic()
        cycle.down(log=print)
        phases.done("down", time.monotonic() - t0)
    left = leftovers()
    if chains_before:   # libvirt chains that were there before the test are not ours to remove
        left.pop("chains", None)
    assert left == {}, f"the Vagrant lab left {left}"
    with capsys.disabled():
        print("\n[vagrant e2e] " + ", ".join(f"{k} {v:.0f}s" for k, v in phases.times.items()))
