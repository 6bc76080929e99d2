"""Cluster DNS end to end on a real 3-node lab (issue 10's Acceptance).

The lab starts kctl-dns on the control-plane address behind
kube-system/kube-dns (10.96.0.10); node agents write each pod's resolv.conf
(ClusterFirst: that nameserver, `search default.svc.cluster.local
svc.cluster.local cluster.local`, `options ndots:5`). From inside pods:

* `echo`, `echo.default`, `echo.default.svc.cluster.local` reach the Service
  (busybox wget in the container: the C library resolves with the pod's own
  resolv.conf, search path and ndots) and busybox nslookup gives its
  ClusterIP; `kubernetes.default.svc.cluster.local` is the first service
  address;
* a headless Service answers its ready pods; SRV records for named ports;
* a pod with `hostname` + `subdomain` and a headless Service of that name has
  its FQDN in DNS, in /etc/hosts and in `hostname -f`;
* an ExternalName Service is a CNAME (and the proxy renders nothing for it);
* UDP and TCP through the VIP work from a pod on every node and from every
  node itself (DNAT to the control plane, masqueraded to the node address);
* an unknown name is NXDOMAIN and an outside name REFUSED, each answered at
  once (a 2 s query timeout would fail the test); no query leaves the lab:
  counter rules in every node's netns see queries only to kctl-dns's address,
  and kctl-dns has no forward metric at all (no upstream);
* scaling the headless Service's Deployment changes the answer; the delay is
  printed (`pytest -s`), the change is asserted with a generous timeout.

Busybox commands run under `timeout` (design §4); dnspython queries run from
the pod's network namespace (nsenter --net) with a 2 s timeout.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from deploy.lab import cluster, naming
from tests.e2e.lab_fixtures import lab, missing_tools, pods, ready, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "dn"
DNS_IP = cluster.dns_service_ip()
NODES = ("node1", "node2", "node3")
COUNT_CHAIN = "KCTLDNSW"      # not KCTL-*: the proxy never touches it; the node netns goes at lab down

MANIFESTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: kctl/echo:latest
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hl}
spec:
  replicas: 2
  selector: {matchLabels: {app: hl}}
  template:
    metadata: {labels: {app: hl}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: busybox, command: [sleep, "3600"], ports: [{name: tcp, containerPort: 7000}]}
---
apiVersion: v1
kind: Service
metadata: {name: hl}
spec:
  clusterIP: None
  selector: {app: hl}
  ports: [{name: tcp, port: 7000}]
---
apiVersion: v1
kind: Service
metadata: {name: sub}
spec:
  clusterIP: None
  selector: {app: client}
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: echo.default.svc.cluster.local
"""


def probe_pod(node: str, hostname: str = "", subdomain: str = "", app: str = "probe") -> str:
    extra = f"\n  hostname: {hostname}\n  subdomain: {subdomain}" if hostname else ""
    return f"""---
apiVersion: v1
kind: Pod
metadata: {{name: probe-{node}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1{extra}
  containers:
  - {{name: main, image: busybox, command: [sleep, "3600"]}}
"""


# ------------------------------------------------------------------ helpers

def in_pod(lab, pod: str, *argv: str, timeout: float = 5) -> subprocess.CompletedProcess:
    """Run argv in the pod's container (its mount namespace: its /etc files), under `timeout`."""
    return lab.kctl("exec", pod, "--", "timeout", str(int(timeout)), *argv, check=False, timeout=timeout + 20)


def nslookup(lab, pod: str, *args: str) -> tuple[int, str]:
    res = in_pod(lab, pod, "nslookup", *args)
    return res.returncode, res.stdout + res.stderr


def answers(out: str) -> set[str]:
    """The IPv4 addresses busybox nslookup printed for the name (not the server's)."""
    body = out.split("Name:", 1)[1] if "Name:" in out else ""
    return set(re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", body, re.M))


def pod_netns(lab, pod) -> str:
    return naming.netns_path(lab.node(pod.spec.node_name).pod_netns_prefix + pod.metadata.uid)


QUERY = r"""
import sys, time, dns.message, dns.query, dns.rcode
name, qtype, proto = sys.argv[1:4]
q = dns.message.make_query(name, qtype)
t0 = time.monotonic()
r = (dns.query.tcp if proto == "tcp" else dns.query.udp)(q, sys.argv[4], timeout=2)
print(dns.rcode.to_text(r.rcode()), "%.1f" % ((time.monotonic() - t0) * 1e3),
      " ".join(sorted(rd.to_text() for rr in r.answer for rd in rr)))
"""


def dig(lab, netns: str, name: str, qtype: str = "A", proto: str = "udp") -> tuple[str, float, list[str]]:
    """(rcode, milliseconds, answers) of one query to the kube-dns VIP from netns `netns`."""
    res = lab.in_netns(netns, [sys.executable, "-c", QUERY, name, qtype, proto, DNS_IP], timeout=15)
    assert res.returncode == 0, f"query {name} {qtype}/{proto} from {netns}: {res.stderr}"
    rcode, ms, *rest = res.stdout.split(" ", 2) + [""]
    return rcode, float(ms), sorted(rest[0].split()) if rest and rest[0].strip() else []


def ips_of(lab, selector: str) -> set[str]:
    return {p.status.pod_ip for p in pods(lab, selector) if ready(p)}


# -------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def apps(lab):
    lab.kctl("apply", "-f", "-", input=MANIFESTS + probe_pod("node1", "client-0", "sub", app="client")
             + probe_pod("node2") + probe_pod("node3"))
    wait_for("echo, hl and the probe pods Ready",
             lambda: len(ips_of(lab, "app=echo")) == 2 and len(ips_of(lab, "app=hl")) == 2
             and len(ips_of(lab, "app in (probe,client)")) == 3, 120)
    return {p.spec.node_name: p for p in pods(lab, "app in (probe,client)")}


def test_the_lab_runs_kctl_dns_behind_kube_dns(lab):
    status = lab.lab("status").stdout
    assert re.search(r"^dns\s+\d+\s+running\s+\d+\s+-\s+root netns$", status, re.M), status
    assert f"kube-system/kube-dns {DNS_IP} -> {lab.topology.cp_address}:53" in status
    svc = lab.api(lambda c: c.get("Service", "kube-dns", "kube-system"))
    assert svc.spec.cluster_ip == DNS_IP
    ep = lab.api(lambda c: c.get("Endpoints", "kube-dns", "kube-system"))
    assert [a.ip for s in ep.subsets for a in s.addresses] == [lab.topology.cp_address]
    k8s = lab.api(lambda c: c.get("Endpoints", "kubernetes", "default"))
    assert [(a.ip, sorted((p.name, p.port) for p in s.ports)) for s in k8s.subsets for a in s.addresses] == \
        [(lab.topology.cp_address, [("grpc", cluster.APISERVER_PORT), ("https", cluster.APISERVER_HTTP_PORT)])]


def test_pod_files_as_the_kubelet_writes_them(lab, apps):
    res = in_pod(lab, "probe-node1", "cat", "/etc/resolv.conf")
    assert res.stdout == (f"search default.svc.cluster.local svc.cluster.local cluster.local\n"
                          f"nameserver {DNS_IP}\noptions ndots:5\n"), res
    ip = apps["node1"].status.pod_ip
    hosts = in_pod(lab, "probe-node1", "cat", "/etc/hosts").stdout
    assert f"{ip}\tclient-0.sub.default.svc.cluster.local\tclient-0\n" in hosts, hosts
    assert in_pod(lab, "probe-node1", "hostname").stdout.strip() == "client-0"
    assert in_pod(lab, "probe-node1", "hostname", "-f").stdout.strip() == "client-0.sub.default.svc.cluster.local"


def test_a_pod_resolves_a_service_by_every_name(lab, apps):
    """busybox nslookup applies the search path only to dotless names (it ignores
    ndots); the C library behind wget follows resolv.conf as applications do:
    `echo.default` is tried as echo.default.default.svc.cluster.local, then
    echo.default.svc.cluster.local (ndots:5)."""
    vip = lab.api(lambda c: c.get("Service", "echo", "default")).spec.cluster_ip
    for name in ("echo", "echo.default.svc.cluster.local"):
        rc, out = nslookup(lab, "probe-node2", name)
        assert answers(out) == {vip}, (name, rc, out)
    rc, out = nslookup(lab, "probe-node3", "kubernetes.default.svc.cluster.local")
    assert answers(out) == {"10.96.0.1"}, out
    rc, out = nslookup(lab, "probe-node3", "-type=srv", "_http._tcp.echo.default.svc.cluster.local")
    assert "service = 0 100 80 echo.default.svc.cluster.local" in out, out
    echo_pods = {p.metadata.name for p in pods(lab, "app=echo")}
    for name in ("echo", "echo.default", "echo.default.svc", "echo.default.svc.cluster.local"):
        res = in_pod(lab, "probe-node2", "wget", "-q", "-O-", f"http://{name}/")
        assert res.stdout.strip() in echo_pods, (name, res)


def test_headless_service_srv_and_a_pods_fqdn(lab, apps):
    hl = ips_of(lab, "app=hl")
    rc, out = nslookup(lab, "probe-node1", "hl")
    assert answers(out) == hl, out
    rc, out = nslookup(lab, "probe-node1", "-type=srv", "_tcp._tcp.hl.default.svc.cluster.local")
    for ip in hl:
        assert f"7000 {ip.replace('.', '-')}.hl.default.svc.cluster.local" in out, out
    client_ip = apps["node1"].status.pod_ip
    rc, out = nslookup(lab, "probe-node2", "client-0.sub.default.svc.cluster.local")
    assert answers(out) == {client_ip}, out
    rc, out = nslookup(lab, "probe-node3", "sub")
    assert answers(out) == {client_ip}, out


def test_external_name_is_a_cname_and_not_proxied(lab, apps):
    vip = lab.api(lambda c: c.get("Service", "echo", "default")).spec.cluster_ip
    rcode, _, got = dig(lab, pod_netns(lab, apps["node2"]), "ext.default.svc.cluster.local.")
    assert rcode == "NOERROR" and "echo.default.svc.cluster.local." in got and vip in got, got
    rules = lab.in_netns(lab.node("node2").netns_path, ["iptables-save", "-t", "nat"]).stdout
    assert "default/echo" in rules and "default/ext" not in rules


def test_udp_and_tcp_through_the_vip_from_every_node_and_its_pods(lab, apps):
    for node in NODES:
        for where, netns in (("node", lab.node(node).netns_path), ("pod", pod_netns(lab, apps[node]))):
            for proto in ("udp", "tcp"):
                rcode, ms, got = dig(lab, netns, "kubernetes.default.svc.cluster.local.", proto=proto)
                assert (rcode, got) == ("NOERROR", ["10.96.0.1"]), (node, where, proto)
                print(f"\n{node} {where} {proto}: {ms:.1f} ms", end="")


def test_unknown_is_nxdomain_outside_is_refused_and_nothing_leaves(lab, apps):
    cp = lab.topology.cp_address
    for node in NODES:          # count DNS packets leaving the node netns (pods: FORWARD; the node: OUTPUT)
        ns = lab.node(node).netns_path
        cmds = [["iptables", "-w", "-N", COUNT_CHAIN]]
        for proto in ("udp", "tcp"):
            cmds += [["iptables", "-w", "-A", COUNT_CHAIN, "-p", proto, "-d", cp, "-j", "RETURN"],
                     ["iptables", "-w", "-A", COUNT_CHAIN, "-p", proto, "!", "-d", cp, "-j", "RETURN"]]
        for hook in ("FORWARD", "OUTPUT"):
            for proto in ("udp", "tcp"):
                cmds.append(["iptables", "-w", "-I", hook, "-p", proto, "--dport", "53", "-j", COUNT_CHAIN])
        for c in cmds:
            res = lab.in_netns(ns, c)
            assert res.returncode == 0, (c, res.stderr)

    client = pod_netns(lab, apps["node1"])
    rcode, ms, got = dig(lab, client, "nosuchsvc.default.svc.cluster.local.")
    print(f"\nunknown name: {rcode} in {ms:.1f} ms")
    assert (rcode, got) == ("NXDOMAIN", [])
    rc, out = nslookup(lab, "probe-node1", "nosuchsvc")
    assert rc != 0 and "NXDOMAIN" in out, out
    for proto in ("udp", "tcp"):
        rcode, ms, got = dig(lab, client, "example.com.", proto=proto)
        print(f"outside name ({proto}): {rcode} in {ms:.1f} ms")
        assert (rcode, got) == ("REFUSED", [])
    rc, out = nslookup(lab, "probe-node2", "example.com")
    assert rc != 0 and "REFUSED" in out, out

    to_cp = escaped = 0
    for node in NODES:
        res = lab.in_netns(lab.node(node).netns_path, ["iptables", "-w", "-nvxL", COUNT_CHAIN])
        for line in res.stdout.splitlines()[2:]:        # pkts bytes target prot opt in out source destination
            f = line.split()
            if f[8].startswith("!"):
                escaped += int(f[0])
            else:
                to_cp += int(f[0])
    print(f"DNS packets from the nodes and their pods: {to_cp} to kctl-dns ({cp}), {escaped} elsewhere")
    assert to_cp > 0 and escaped == 0
    with urllib.request.urlopen(f"http://{cp}:{cluster.DNS_METRICS_PORT}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'rcode="REFUSED"' in metrics and "kctl_dns_forward_requests_total{" not in metrics


def test_scaling_the_headless_deployment_changes_the_answer(lab, apps):
    client = pod_netns(lab, apps["node1"])
    name = "hl.default.svc.cluster.local."
    assert set(dig(lab, client, name)[2]) == ips_of(lab, "app=hl")
    t0 = time.monotonic()
    lab.kctl("scale", "deployment/hl", "--replicas", "4")
    want = wait_for("4 ready hl pods", lambda: (lambda s: s if len(s) == 4 else None)(ips_of(lab, "app=hl")), 90)
    t_ready = time.monotonic()
    wait_for("the 4 addresses in DNS", lambda: set(dig(lab, client, name)[2]) == want, 60, interval=0.05)
    t_dns = time.monotonic()
    print(f"\nscale 2->4: pods Ready after {t_ready - t0:.2f}s, DNS answer changed "
          f"{t_dns - t_ready:.2f}s after the 4th pod was seen Ready")
    lab.kctl("scale", "deployment/hl", "--replicas", "1")
    t0 = time.monotonic()
    wait_for("a single address in DNS", lambda: len(dig(lab, client, name)[2]) == 1, 60, interval=0.05)
    print(f"scale 4->1: DNS answer down to one address {time.monotonic() - t0:.2f}s after `kctl scale`")
