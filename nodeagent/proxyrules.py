"""The service proxy's rules: Services + Endpoints -> one iptables-restore payload (pure).

What it programs (all chains are ours, named ``KCTL-*``; design §3)::

  nat PREROUTING, OUTPUT ──► KCTL-SERVICES
        -d VIP -p P --dport PORT ─────────────► KCTL-SVC-<h>   (one per service port with endpoints)
        -d NODE_IP (last rule) ───────────────► KCTL-NODEPORTS
                                   --dport NP ─► KCTL-EXT-<h>  ─ ! -s POD_CIDR → KCTL-MARK-MASQ
                                                               └ KCTL-SVC-<h>
  KCTL-SVC-<h>:  ! -s POD_CIDR → KCTL-MARK-MASQ (off-pod clients, e.g. the node itself)
                 statistic random 1/n   → KCTL-SEP-<h1>
                 statistic random 1/(n-1) → KCTL-SEP-<h2>  …  last one unconditional
  KCTL-SEP-<h>:  -s EP_IP → KCTL-MARK-MASQ (hairpin: the pod reached itself through the VIP)
                 DNAT --to-destination EP_IP:EP_PORT
  sessionAffinity ClientIP (kube-proxy's way, 10800 s): before the random rules,
  ``-m recent --rcheck`` sends a known client to its SEP; the SEP's DNAT rule
  records the client with ``-m recent --set``.
  nat POSTROUTING ──► KCTL-POSTROUTING
        -s POD_CIDR -d MASQUERADE_CIDR → MASQUERADE   (pod egress to e.g. the lab's node subnet)
        unmarked → RETURN; clear the mark; MASQUERADE --random-fully
  filter FORWARD, OUTPUT (ctstate NEW) ──► KCTL-SERVICES: VIPs without endpoints → REJECT
  filter INPUT, FORWARD (ctstate NEW) ──► KCTL-EXTERNAL-SERVICES: NodePorts without endpoints → REJECT

The random choice is kube-proxy's: rule i of n matches with probability
1/(n-i), so each of the n endpoints gets 1/n of the new connections; conntrack
keeps a connection on the endpoint its first packet picked.  Chain names hash
"namespace/name:port" + protocol (+ "ip:port" for endpoints) with SHA-256,
base32, 16 characters: stable across restarts, at most 25 characters (iptables
allows 28).

Everything here is a pure function of its arguments (no iptables is run):
``service_ports`` flattens Services and Endpoints, ``render``/``render_ports``
give the payload (sorted, so the same input gives the same text), and the
helpers after them read payloads and ``iptables-save`` output (declared and
stale chains, rule counts) or compute the UDP conntrack deletions a change
needs.  The Proxier (nodeagent/proxy.py) applies the result.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Iterable

from nodeagent.errors import AgentConfigError

log = logging.getLogger("kctl.nodeagent.proxy")

PREFIX = "KCTL-"
SERVICES, NODEPORTS, EXTERNAL_SERVICES = "KCTL-SERVICES", "KCTL-NODEPORTS", "KCTL-EXTERNAL-SERVICES"
POSTROUTING, MARK_MASQ = "KCTL-POSTROUTING", "KCTL-MARK-MASQ"
MASQ_MARK = "0x4000"  # the bit kube-proxy uses; our chains live in node netns of their own
PROTOCOLS = ("tcp", "udp", "sctp")
AFFINITY_SECONDS = 10800  # Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds


# (table, built-in chain, rule spec): the only rules we put outside KCTL-* chains.
HOOKS: list[tuple[str, str, tuple[str, ...]]] = [
    ("nat", "PREROUTING", ("-m", "comment", "--comment", "kctl service portals", "-j", SERVICES)),
    ("nat", "OUTPUT", ("-m", "comment", "--comment", "kctl service portals", "-j", SERVICES)),
    ("nat", "POSTROUTING", ("-m", "comment", "--comment", "kctl postrouting rules", "-j", POSTROUTING)),
] + [
    ("filter", chain, ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", comment, "-j", target))
    for chain, comment, target in (
        ("INPUT", "kctl externally-visible service portals", EXTERNAL_SERVICES),
        ("FORWARD", "kctl externally-visible service portals", EXTERNAL_SERVICES),
        ("FORWARD", "kctl service portals", SERVICES),
        ("OUTPUT", "kctl service portals", SERVICES))
]


# ---------------------------------------------------------------------------- model

@dataclass(frozen=True)
class ServicePortInfo:
    """One port of one service, with its ready endpoints: the unit that gets a KCTL-SVC chain."""
    namespace: str
    name: str
    port_name: str
    protocol: str          # lower case: tcp / udp / sctp
    cluster_ip: str
    port: int
    node_port: int
    endpoints: tuple[tuple[str, int], ...]   # sorted (ip, port)
    affinity_seconds: int = 0                 # sessionAffinity ClientIP: stick for this long (0 = off)

    @property
    def key(self) -> str:
        """kube-proxy's ServicePortName: "ns/name:port", or "ns/name" for an unnamed port."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def svc_chain(self) -> str:
        return "KCTL-SVC-" + _hash(self.key + self.protocol)

    @property
    def ext_chain(self) -> str:
        return "KCTL-EXT-" + _hash(self.key + self.protocol)

    def sep_chain(self, ip: str, port: int) -> str:
        return "KCTL-SEP-" + _hash(f"{self.key}{self.protocol}{ip}:{port}")


@functools.lru_cache(maxsize=1 << 16)
def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


@functools.lru_cache(maxsize=1 << 16)
def _ipv4(text: str) -> str | None:
    """The canonical dotted quad, or None if TEXT is not an IPv4 address (cached: called per endpoint)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(ip) if ip.version == 4 else None


def service_ports(services: Iterable, endpoints: Iterable) -> list[ServicePortInfo]:
    """Flatten Services + Endpoints into sorted ServicePortInfo.

    Skipped: headless (clusterIP None) and ExternalName services, non-IPv4
    cluster IPs, unknown protocols, invalid ports; nodePorts count only for
    NodePort and LoadBalancer services.  Endpoints are matched to a service port by
    (port name, protocol), the way the endpoints controller names them, so a
    named targetPort is already resolved to a number there; only ready
    ``addresses`` count, ``notReadyAddresses`` never get traffic.
    """
    eps: dict[tuple[str, str], dict[tuple[str, str], set[tuple[str, int]]]] = {}
    for e in endpoints:
        by_port = eps.setdefault((e.metadata.namespace, e.metadata.name), {})
        for subset in e.subsets:
            for p in subset.ports:
                if not 0 < p.port < 65536:
                    continue
                dest = by_port.setdefault((p.name, (p.protocol or "TCP").lower()), set())
                for a in subset.addresses:
                    ip = _ipv4(a.ip)
                    if ip:
                        dest.add((ip, p.port))
    out = []
    for s in services:
        spec = s.spec
        vip = _ipv4(spec.cluster_ip)
        if spec.type == "ExternalName" or not vip:
            continue
        node_ports = spec.type in ("NodePort", "LoadBalancer")
        affinity = AFFINITY_SECONDS if spec.session_affinity == "ClientIP" else 0
        for sp in spec.ports:
            proto = (sp.protocol or "TCP").lower()
            if not 0 < sp.port < 65536:
                continue
            if proto not in PROTOCOLS:
                log.warning("service %s/%s: unsupported protocol %r", s.metadata.namespace, s.metadata.name,
                            sp.protocol)
                continue
            found = eps.get((s.metadata.namespace, s.metadata.name), {}).get((sp.name, proto), ())
            ordered = tuple(sorted(found, key=lambda ep: (socket.inet_aton(ep[0]), ep[1])))
            node_port = sp.node_port if node_ports and 0 < sp.node_port < 65536 else 0
            out.append(ServicePortInfo(s.metadata.namespace, s.metadata.name, sp.name, proto, vip, sp.port,
                                       node_port, ordered, affinity))
    out.sort(key=lambda i: (i.namespace, i.name, i.port_name, i.protocol))
    return out


# ---------------------------------------------------------------------------- render

def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", f'"{text}"' if " " in text else text]


def _line(chain: str, *parts) -> str:
    words = ["-A", chain]
    for p in parts:
        words.extend(p if isinstance(p, list) else [p])
    return " ".join(words)


def render(services: Iterable, endpoints: Iterable, *, node_ip: str | None, pod_cidr: str | None = None,
           masquerade_cidr: str | None = None) -> str:
    """The iptables-restore payload for these Services and Endpoints (see ``render_ports``)."""
    return render_ports(service_ports(services, endpoints), node_ip=node_ip, pod_cidr=pod_cidr,
                        masquerade_cidr=masquerade_cidr)


def render_ports(ports: Iterable[ServicePortInfo], *, node_ip: str | None, pod_cidr: str | None = None,
                 masquerade_cidr: str | None = None) -> str:
    """The iptables-restore payload (``filter`` then ``nat``) for these Services and Endpoints.

    node_ip: NodePorts answer on this address (like kube-proxy with
    ``--nodeport-addresses`` set to it); None = every local address but 127/8.
    pod_cidr: the CIDR whose sources count as pods (the node's spec.podCIDR, as
    kube-proxy's ``--detect-local-mode=NodeCIDR``, or the cluster CIDR):
    sources outside it are masqueraded on ClusterIPs and NodePorts.  None: no
    ClusterIP masquerade, NodePort traffic always masqueraded.
    masquerade_cidr: pod traffic from pod_cidr to this CIDR is masqueraded to
    the node's address (the lab passes its node subnet).  Must not overlap pod_cidr.
    """
    pod_net = ipaddress.ip_network(pod_cidr, strict=False) if pod_cidr else None
    masq_net = ipaddress.ip_network(masquerade_cidr, strict=False) if masquerade_cidr else None
    if pod_net and masq_net and pod_net.overlaps(masq_net):
        raise AgentConfigError(f"masquerade CIDR {masq_net} overlaps the pod CIDR {pod_net}")
    if node_ip is not None and not _ipv4(node_ip):
        raise AgentConfigError(f"node IP {node_ip!r} is not an IPv4 address")
    not_pod = ["!", "-s", str(pod_net)] if pod_net else []
    node_dst = ["-d", f"{node_ip}/32"] if node_ip else ["-m", "addrtype", "--dst-type", "LOCAL"]

    filter_chains, filter_rules = [SERVICES, EXTERNAL_SERVICES], []
    nat_chains, nat_rules = [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ], []
    nat_rules.append(_line(MARK_MASQ, "-j", "MARK", "--or-mark", MASQ_MARK))
    if pod_net and masq_net:
        nat_rules.append(_line(POSTROUTING, _comment(f"pod traffic to {masq_net}"),
                               "-s", str(pod_net), "-d", str(masq_net), "-j", "MASQUERADE"))
    nat_rules += [
        _line(POSTROUTING, "-m", "mark", "!", "--mark", f"{MASQ_MARK}/{MASQ_MARK}", "-j", "RETURN"),
        _line(POSTROUTING, "-j", "MARK", "--xor-mark", MASQ_MARK),
        _line(POSTROUTING, _comment("kctl service traffic requiring SNAT"), "-j", "MASQUERADE", "--random-fully"),
    ]

    for sp in ports:
        proto = ["-p", sp.protocol, "-m", sp.protocol]
        vip = ["-d", f"{sp.cluster_ip}/32"]
        if not sp.endpoints:
            why = _comment(f"{sp.key} has no endpoints")
            filter_rules.append(_line(SERVICES, why, vip, proto, "--dport", str(sp.port), "-j", "REJECT"))
            if sp.node_port:
                filter_rules.append(_line(EXTERNAL_SERVICES, why, node_dst, proto, "--dport", str(sp.node_port),
                                          "-j", "REJECT"))
            continue
        svc, ext = sp.svc_chain, sp.ext_chain
        seps = [(ip, port, sp.sep_chain(ip, port)) for ip, port in sp.endpoints]
        nat_chains += [svc] + ([ext] if sp.node_port else []) + [c for _, _, c in seps]
        cluster_ip = _comment(f"{sp.key} cluster IP")
        nat_rules.append(_line(SERVICES, cluster_ip, vip, proto, "--dport", str(sp.port), "-j", svc))
        if sp.node_port:
            nat_rules.append(_line(NODEPORTS, _comment(sp.key), proto, "--dport", str(sp.node_port), "-j", ext))
            nat_rules.append(_line(ext, _comment(f"masquerade traffic for {sp.key} external destinations"),
                                   not_pod, "-j", MARK_MASQ))
            nat_rules.append(_line(ext, "-j", svc))
        if pod_net:
            nat_rules.append(_line(svc, cluster_ip, not_pod, vip, proto, "--dport", str(sp.port), "-j", MARK_MASQ))
        if sp.affinity_seconds:   # a client seen recently goes back to the endpoint it had
            for ip, port, chain in seps:
                nat_rules.append(_line(svc, _comment(f"{sp.key} -> {ip}:{port}"), "-m", "recent", "--name", chain,
                                       "--rcheck", "--seconds", str(sp.affinity_seconds), "--reap", "-j", chain))
        n = len(seps)
        for i, (ip, port, chain) in enumerate(seps):
            pick = ["-m", "statistic", "--mode", "random", "--probability", f"{1 / (n - i):.10f}"] if i < n - 1 else []
            nat_rules.append(_line(svc, _comment(f"{sp.key} -> {ip}:{port}"), pick, "-j", chain))
        for ip, port, chain in seps:
            nat_rules.append(_line(chain, _comment(sp.key), "-s", f"{ip}/32", "-j", MARK_MASQ))
            remember = ["-m", "recent", "--name", chain, "--set"] if sp.affinity_seconds else []
            nat_rules.append(_line(chain, _comment(sp.key), remember, "-p", sp.protocol, "-m", sp.protocol,
                                   "-j", "DNAT", "--to-destination", f"{ip}:{port}"))

    nat_rules.append(_line(SERVICES, _comment("kctl service nodeports; must be the last rule"), node_dst,
                           *([] if node_ip else [["!", "-d", "127.0.0.0/8"]]), "-j", NODEPORTS))
    out = ["*filter", *(f":{c} - [0:0]" for c in filter_chains), *filter_rules, "COMMIT",
           "*nat", *(f":{c} - [0:0]" for c in nat_chains), *nat_rules, "COMMIT"]
    return "\n".join(out) + "\n"


def declared_chains(payload: str, table: str = "nat") -> set[str]:
    """Chains declared (``:NAME``) in PAYLOAD's TABLE section."""
    out, current = set(), None
    for line in payload.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif line.startswith(":") and current == table:
            out.add(line[1:].split()[0])
    return out


def kctl_chains(save_output: str) -> set[str]:
    """KCTL-* chain names in ``iptables-save`` output (other chains are never ours)."""
    return {line[1:].split()[0] for line in save_output.splitlines() if line.startswith(":" + PREFIX)}


def stale_chains(payload: str, existing: Iterable[str]) -> list[str]:
    """Existing KCTL-* nat chains the payload no longer declares, sorted."""
    want = declared_chains(payload, "nat")
    return sorted(c for c in existing if c.startswith(PREFIX) and c not in want)


def with_stale_deletions(payload: str, stale: Iterable[str]) -> str:
    """PAYLOAD plus, in its nat section, a declaration (flush) and ``-X`` for each stale chain."""
    stale = list(stale)
    if not stale:
        return payload
    lines = payload.splitlines()
    nat = lines.index("*nat")
    commit = lines.index("COMMIT", nat)
    last_decl = max(i for i in range(nat, commit) if lines[i].startswith(":") or i == nat)
    lines[commit:commit] = [f"-X {c}" for c in stale]
    lines[last_decl + 1:last_decl + 1] = [f":{c} - [0:0]" for c in stale]
    return "\n".join(lines) + "\n"


def count_rules(payload: str) -> dict[str, int]:
    counts, table = {}, None
    for line in payload.splitlines():
        if line.startswith("*"):
            table = line[1:]
            counts[table] = 0
        elif line.startswith("-A "):
            counts[table] += 1
    return counts


def udp_conntrack_deletions(old: dict[str, ServicePortInfo], new: Iterable[ServicePortInfo]) -> list[tuple]:
    """``conntrack -D`` argument lists that UDP needs after a change from OLD to NEW.

    UDP has no connection end: conntrack keeps steering a client's packets to
    the endpoint its first packet was DNATed to (or, if the VIP had no
    endpoints then, past the nat table altogether).  As kube-proxy does, we
    delete (a) the entries DNATed to an endpoint that is gone, for its VIP and
    NodePort, and (b) all entries of a VIP / NodePort that had no endpoints and
    now has some.  OLD is keyed by ``key/protocol``; only UDP ports are looked at.
    """
    new_udp = {f"{sp.key}/{sp.protocol}": sp for sp in new if sp.protocol == "udp"}
    out = set()
    for k, was in old.items():
        now = new_udp.get(k)
        for ip, _ in set(was.endpoints) - set(now.endpoints if now else ()):
            out.add(("-p", "udp", "--orig-dst", was.cluster_ip, "--dst-nat", ip))
            if was.node_port:
                out.add(("-p", "udp", "--orig-port-dst", str(was.node_port), "--dst-nat", ip))
    for k, now in new_udp.items():
        if now.endpoints and not (old.get(k) and old[k].endpoints):
            out.add(("-p", "udp", "--orig-dst", now.cluster_ip, "--orig-port-dst", str(now.port)))
            if now.node_port:
                out.add(("-p", "udp", "--orig-port-dst", str(now.node_port)))
    return sorted(out)
