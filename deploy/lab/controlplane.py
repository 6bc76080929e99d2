"""The control plane of a lab: its PKI, the command lines of its components,
and starting them as units of the lab's supervisors (`start`), on one
machine or on N.

Two layouts (topology.py draws them):

* one control plane (``--control-planes 1``, the default): etcd on
  127.0.0.1 of the host (a free port), the apiserver, scheduler, controller
  manager and kctl-dns in the root netns bound to S.1, all units of the
  host's supervisor, named ``etcd``, ``apiserver``, ``scheduler``,
  ``controller-manager``, ``dns``;
* an HA control plane (odd N > 1): each machine cpI (netns ``<prefix>cpI``,
  address S.(1+I)) runs one member of an N-member etcd cluster (client
  S.x:2379, peer S.x:2380, plaintext like the one-machine etcd; only the
  lab's own namespaces reach it) and the four components, all units of that
  machine's supervisor (``supervisor-cpI``, started in its netns), named
  ``<component>-cpI``. Each apiserver gets every etcd member in
  ``--etcd-servers`` (its storage fails over between them); the scheduler,
  controller manager and kctl-dns of a machine get every apiserver, their own
  machine's first (kubeadm's static pods talk to the local apiserver; the
  rest is the failover list). The scheduler and controller manager run with
  ``--leader-elect`` (Leases kube-system/kube-scheduler -- the name
  Kubernetes' RBAC lets system:kube-scheduler update -- and
  kube-system/kctl-controller-manager) and ``--identity cpI``, so a Lease's holder names
  the machine that leads (a restarted instance on the same machine may
  resume its own unexpired lease at once); every kctl-dns adds its address to
  kube-system/kube-dns.

The etcd members are started together and waited for afterwards: a member
reports healthy only once a quorum has elected a leader.

`etcd_members`/`etcd_leader` read each member's status from etcd's JSON
gateway (who leads, by member id) for `kctl lab status` and the fault verbs.
The serving certificate carries every control-plane address (and S.1), so a
client checks the server name whichever apiserver it reaches.
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
import urllib.request
from collections import Counter
from pathlib import Path

from deploy.lab import naming, units
from deploy.lab.naming import LabError
from deploy.lab.topology import Lab

APISERVER_PORT = 6443
APISERVER_HTTP_PORT = 8080   # the Kubernetes HTTP API, for kubectl (kubeconfig `server`)
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380  # etcd members of an HA lab (own netns each)
# Service ClusterIPs (the apiserver's default, spelled out). Node namespaces
# have no default route (topology.py), and a locally generated packet needs a
# route BEFORE the proxy's nat OUTPUT rule can DNAT it: each node netns gets
# an on-link route for this range via its lab interface, so `kctl lab exec
# NODE -- wget http://CLUSTER-IP/` works as on a real node. A VIP without
# endpoints then dies on the lab bridge (unanswered ARP), never leaves the lab.
SERVICE_CIDR = "10.96.0.0/16"
# Cluster DNS: kctl-dns runs on the control-plane address(es) (like the
# apiserver) and registers itself behind kube-system/kube-dns
# (clusterdns/register.py), whose ClusterIP is the 10th address of the service
# CIDR (10.96.0.10, as kubeadm picks it). A pod's query goes to that VIP, the
# node's proxy DNATs it to CP:53 and the agent's pod-egress masquerade (its
# --masquerade-cidr is the lab subnet) gives it the node's source address,
# which the control plane's strict rp_filter accepts; UDP and TCP alike. No
# upstream is configured: names outside the cluster domain are REFUSED at
# once, so a DNS query never leaves the lab.
CLUSTER_DOMAIN = "cluster.local"
DNS_PORT, DNS_METRICS_PORT = 53, 9153
METRICS_PORTS = {"apiserver": 9464, "scheduler": 10259, "controller-manager": 10257, "dns": DNS_METRICS_PORT}
SCHEDULER_LEASE, CONTROLLER_MANAGER_LEASE = "kube-scheduler", "kctl-controller-manager"  # kube-system
COMPONENTS = ("etcd", "apiserver", "scheduler", "controller-manager", "dns")
# Node lifecycle timing of the lab (the controller manager's defaults, spelled
# out so `ps` and the tests see them): a silent node is NotReady after
# NODE_GRACE seconds, its pods are evicted POD_EVICTION seconds later.
NODE_GRACE = 4.0
POD_EVICTION = 2.0
# HPAs are reconciled every HPA_SYNC seconds (Kubernetes: 15 s) so that a
# lab's autoscaling walkthrough answers its load within a few metric windows.
HPA_SYNC = 5.0
CONTROLLER_FLAGS = ["--node-monitor-grace-period", f"{NODE_GRACE:g}s",
                    "--pod-eviction-timeout", f"{POD_EVICTION:g}s",
                    "--horizontal-pod-autoscaler-sync-period", f"{HPA_SYNC:g}s"]


def _bin(name: str) -> str:
    p = Path(sys.executable).parent / name
    if not p.exists():
        raise LabError(f"{p} not found: install kctl first (./deploy/install.sh)")
    return str(p)


def dns_service_ip(cidr: str = SERVICE_CIDR) -> str:
    """The kube-dns ClusterIP: the 10th address of the service CIDR."""
    return str(ipaddress.ip_network(cidr).network_address + 10)


def pki_dir(name: str) -> str:
    """The lab's certificates (kubeadm's layout, machinery.pki)."""
    return os.path.join(naming.state_dir(name), "pki")


def make_pki(lab: Lab):
    """The lab's CA, serving and component certificates and one node
    certificate per node; returns the machinery.pki.PKI. The serving
    certificate's SANs carry every control-plane address and S.1."""
    from machinery import pki
    first = lab.cp_addresses[0]
    store = pki.PKI(pki_dir(lab.name), pki.Endpoints(
        grpc=",".join(f"{a}:{APISERVER_PORT}" for a in lab.cp_addresses), https_url=f"https://{first}:{APISERVER_HTTP_PORT}",
        ips=list(dict.fromkeys([lab.cp_address, *lab.cp_addresses])),
        service_ip=str(ipaddress.ip_network(SERVICE_CIDR).network_address + 1), cluster_name=f"kctl-lab-{lab.name}"))
    store.control_plane()
    for n in lab.nodes:
        store.node(n.name, n.ip)
    return store


def admin_credentials(name: str):
    """The lab admin's machinery.kubeconfig.Credentials."""
    from machinery import kubeconfig
    return kubeconfig.select(os.path.join(pki_dir(name), "admin.conf")).credentials


def signing_flags(certs: str, https_url: str) -> list[str]:
    """The controller manager's CA flags (kube-controller-manager's): the cluster CA signs approved
    CSRs (node join), is published as kube-root-ca.crt in every namespace, and cluster-info in
    kube-public names the HTTPS API (where a joining node's bootstrap token works)."""
    ca, key = os.path.join(certs, "ca.crt"), os.path.join(certs, "ca.key")
    return ["--cluster-signing-cert-file", ca, "--cluster-signing-key-file", key, "--root-ca-file", ca,
            "--cluster-info-server", https_url]


def unit_name(comp: str, machine: str | None = None) -> str:
    """The supervisor unit of `comp` on `machine`: ``apiserver``, ``apiserver-cp2``."""
    return f"{comp}-{machine}" if machine else comp


def apiservers(lab: Lab) -> list[str]:
    """Every apiserver's gRPC endpoint, in machine order."""
    return [f"{a}:{APISERVER_PORT}" for a in lab.cp_addresses]


def local_first(endpoints: list[str], own: str) -> list[str]:
    """`endpoints` with `own` moved to the front (a component prefers its machine's apiserver)."""
    return [own, *[e for e in endpoints if e != own]]


def control_plane_argv(lab: Lab, etcd_url: str, machine: str | None = None,
                       servers: list[str] | None = None) -> dict[str, list[str]]:
    """argv of the apiserver, scheduler, controller manager and cluster DNS of
    `lab` (of its machine `machine`: bound to that machine's address).
    `etcd_url` is --etcd-servers (a comma list in an HA lab); `servers` the
    apiservers the components are given (default: their own only)."""
    cp = lab.machine(machine).ip if machine else lab.cp_address
    apiserver = f"{cp}:{APISERVER_PORT}"
    clients = ",".join(local_first(servers, apiserver) if servers else [apiserver])
    certs = pki_dir(lab.name)
    elect = ["--leader-elect", "--identity", machine] if machine else []
    lease = ["--lease-name", SCHEDULER_LEASE] if machine else []
    return {
        "apiserver": [_bin("kctl-apiserver"), "--etcd-servers", etcd_url,
                      "--service-cluster-ip-range", SERVICE_CIDR, "--listen", apiserver,
                      "--http-listen", f"{cp}:{APISERVER_HTTP_PORT}", "--cert-dir", certs,
                      "--metrics-listen", f"{cp}:{METRICS_PORTS['apiserver']}"],
        "scheduler": [_bin("kctl-scheduler"), "--kubeconfig", os.path.join(certs, "scheduler.conf"),
                      "--apiserver", clients, "--metrics-listen", f"{cp}:{METRICS_PORTS['scheduler']}", *elect, *lease],
        "controller-manager": [_bin("kctl-controller-manager"),
                               "--kubeconfig", os.path.join(certs, "controller-manager.conf"), "--apiserver", clients,
                               "--metrics-listen", f"{cp}:{METRICS_PORTS['controller-manager']}",
                               *CONTROLLER_FLAGS, *signing_flags(certs, f"https://{cp}:{APISERVER_HTTP_PORT}"),
                               *elect],
        "dns": [_bin("kctl-dns"), "--kubeconfig", os.path.join(certs, "dns.conf"),
                "--apiserver", clients, "--listen", f"{cp}:{DNS_PORT}",
                "--cluster-domain", CLUSTER_DOMAIN, "--cluster-ip", dns_service_ip(),
                "--metrics-listen", f"{cp}:{METRICS_PORTS['dns']}"],
    }


# ------------------------------------------------------------------ etcd

def etcd_peers(lab: Lab) -> dict[str, str]:
    """{member name: peer URL} of an HA lab's etcd cluster (member = machine)."""
    return {m.name: f"http://{m.ip}:{ETCD_PEER_PORT}" for m in lab.machines}


def etcd_client_urls(lab: Lab) -> dict[str, str]:
    """{machine: client URL} of an HA lab's etcd members."""
    return {m.name: f"http://{m.ip}:{ETCD_CLIENT_PORT}" for m in lab.machines}


def etcd_member_argv(lab: Lab, machine: str) -> list[str]:
    """The etcd member of `machine` (harness.etcd's command line, the one the
    tests' EtcdCluster runs), data in <data dir>/etcd-<machine>; the cluster
    token is the lab's prefix, so two labs' members never join each other."""
    from harness.etcd import etcd_cluster_argv
    peers = etcd_peers(lab)
    return etcd_cluster_argv(machine, os.path.join(naming.data_dir(lab.name), f"etcd-{machine}"),
                             etcd_client_urls(lab)[machine], peers[machine], peers,
                             token=f"{lab.prefix}etcd")


def _post(url: str, path: str, timeout: float) -> dict:
    req = urllib.request.Request(url + path, data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - a lab address
        return json.load(r)


def etcd_members(lab: Lab, timeout: float = 1.0) -> dict[str, dict]:
    """{machine: {"url", "id", "leader_id", "healthy"}} from each member's
    /v3/maintenance/status (ids as etcd's gateway spells them, decimal
    strings); an unreachable member has id/leader_id None, healthy False."""
    out = {}
    for machine, url in etcd_client_urls(lab).items():
        try:
            st = _post(url, "/v3/maintenance/status", timeout)
            leader = st.get("leader") if st.get("leader") not in (None, "0") else None
            out[machine] = {"url": url, "id": st["header"]["member_id"], "leader_id": leader,
                            "healthy": leader is not None and not st.get("errors")}
        except (OSError, ValueError, KeyError) as exc:
            out[machine] = {"url": url, "id": None, "leader_id": None, "healthy": False, "error": str(exc)}
    return out


def leader_of(members: dict[str, dict]) -> str | None:
    """The machine whose member id most reachable members name as leader
    (ties and unknown ids: None). A partitioned old leader may still name
    itself for a moment; the majority's view wins."""
    ids = {m["id"]: machine for machine, m in members.items() if m.get("id")}
    votes = Counter(m["leader_id"] for m in members.values() if m.get("leader_id"))
    if not votes:
        return None
    (lead, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        return None
    return ids.get(lead)


def etcd_leader(lab: Lab) -> str | None:
    return leader_of(etcd_members(lab))


# ----------------------------------------------------------------- start

def start(lab: Lab, step, wait, probes) -> dict:
    """Start the control plane of `lab` as supervised units; returns what
    cluster.json records about it (``apiserver``, ``apiservers``, ``etcd``,
    ``machines``). `step(msg)` prints progress, `wait(what, check, timeout)`
    polls, `probes` has ``http_ok(url)`` and ``api_ready(server)``."""
    return _start_ha(lab, step, wait, probes) if lab.machine_names else _start_one(lab, step, wait, probes)


def _start_one(lab: Lab, step, wait, probes) -> dict:
    from deploy.registry import free_port
    from harness.etcd import etcd_argv
    client, peer = free_port(), free_port()
    units.add(lab, "etcd", etcd_argv(f"kl{lab.name}", os.path.join(naming.data_dir(lab.name), "etcd"), client, peer,
                                    "etcd"))
    etcd = f"http://127.0.0.1:{client}"
    wait("etcd", lambda: probes.http_ok(f"{etcd}/health"), 20)
    step(f"etcd on 127.0.0.1:{client}")
    argvs = control_plane_argv(lab, etcd)
    apiserver = apiservers(lab)[0]
    units.add(lab, "apiserver", argvs["apiserver"])
    wait("the apiserver", lambda: probes.api_ready(apiserver), 20)
    step(f"apiserver on {apiserver} (gRPC), https://{lab.cp_address}:{APISERVER_HTTP_PORT} (Kubernetes HTTP API), TLS")
    for comp in ("scheduler", "controller-manager", "dns"):
        units.add(lab, comp, argvs[comp])
    return {"apiserver": apiserver, "apiservers": [apiserver], "etcd": etcd}


def _start_ha(lab: Lab, step, wait, probes) -> dict:
    machines, urls, servers = lab.machine_names, etcd_client_urls(lab), apiservers(lab)
    for m in machines:
        units.launch(lab, m)
        units.add(lab, unit_name("etcd", m), etcd_member_argv(lab, m), machine=m)
    for m in machines:
        wait(f"etcd member {m}", lambda url=urls[m]: probes.http_ok(f"{url}/health"), 30)
    step(f"etcd cluster of {len(machines)} members ({', '.join(urls.values())}), leader "
         f"{wait('an etcd leader', lambda: etcd_leader(lab), 20)}")
    etcd = ",".join(urls.values())
    argvs = {m: control_plane_argv(lab, etcd, m, servers) for m in machines}
    for m in machines:
        units.add(lab, unit_name("apiserver", m), argvs[m]["apiserver"], machine=m)
    for server in servers:
        wait(f"the apiserver on {server}", lambda s=server: probes.api_ready(s), 30)
    step(f"apiservers on {', '.join(servers)} (gRPC, TLS), HTTPS API on port {APISERVER_HTTP_PORT} of each")
    for m in machines:
        for comp in ("scheduler", "controller-manager", "dns"):
            units.add(lab, unit_name(comp, m), argvs[m][comp], machine=m)
    return {"apiserver": servers[0], "apiservers": servers, "etcd": etcd, "control_planes": len(machines),
            "machines": {m.name: {"address": m.ip, "etcd": urls[m.name], "apiserver": f"{m.ip}:{APISERVER_PORT}"}
                         for m in lab.machines}}
