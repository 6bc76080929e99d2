"""The service proxy's rules: service ports -> iptables-restore payloads, full or partial (pure).

What it programs (all chains are ours, named ``KCTL-*``; design §3)::

  nat PREROUTING, OUTPUT ──► KCTL-SERVICES
        -d VIP -p P --dport PORT ─────────────► KCTL-SVC-<h>   (KCTL-SVL-<h> if internalTrafficPolicy Local)
        -d NODE_IP (last rule) ───────────────► KCTL-NODEPORTS
                                   --dport NP ─► KCTL-EXT-<h>  ─ ! -s POD_CIDR → KCTL-MARK-MASQ
                                                               └ KCTL-SVC-<h>
  KCTL-SVC-<h>:  ! -s POD_CIDR → KCTL-MARK-MASQ (off-pod clients, e.g. the node itself)
                 statistic random 1/n   → KCTL-SEP-<h1>
                 statistic random 1/(n-1) → KCTL-SEP-<h2>  …  last one unconditional
  KCTL-SVL-<h>:  the same over the node-local endpoints only
  KCTL-SEP-<h>:  -s EP_IP → KCTL-MARK-MASQ (hairpin: the pod reached itself through the VIP)
                 DNAT --to-destination EP_IP:EP_PORT
  sessionAffinity ClientIP (kube-proxy's way, timeoutSeconds, 10800 s by default):
  before the random rules, ``-m recent --rcheck`` sends a known client to its
  SEP; the SEP's DNAT rule records the client with ``-m recent --set``.
  externalTrafficPolicy Local, KCTL-EXT-<h> as kube-proxy's: pod sources → the
  SVC chain; node-local sources → masquerade + SVC chain; everyone else → the
  SVL chain, not masqueraded, so the client's source IP reaches the pod.
  nat POSTROUTING ──► KCTL-POSTROUTING
        -s POD_CIDR -d MASQUERADE_CIDR → MASQUERADE   (pod egress to e.g. the lab's node subnet)
        unmarked → RETURN; clear the mark; MASQUERADE --random-fully
  filter FORWARD, OUTPUT (ctstate NEW) ──► KCTL-SERVICES: VIPs without endpoints → REJECT,
        with endpoints but none local under internalTrafficPolicy Local → DROP
  filter INPUT, FORWARD (ctstate NEW) ──► KCTL-EXTERNAL-SERVICES: NodePorts without endpoints → REJECT
        (none local under externalTrafficPolicy Local → DROP)

Which endpoints a port uses (ready ones, else serving terminating ones; the
local subset) is nodeagent/proxymodel.py.  The random choice is kube-proxy's:
rule i of n matches with probability 1/(n-i), so each of the n endpoints gets
1/n of the new connections; conntrack keeps a connection on the endpoint its
first packet picked.  Chain names hash "namespace/name:port" + protocol (+
"ip:port" for endpoints) with SHA-256, base32, 16 characters: stable across
restarts, at most 25 characters (iptables allows 28).

Full and partial payloads: ``render_fragment`` turns one service port into a
``Fragment`` — its lines in the shared top-level chains and its own chains
(SVC, SVL, EXT, SEPs) with their rules.  ``assemble`` writes the top-level
chains whole every time and a fragment's own chains only when asked: all of
them (a full payload) or the changed ones (``partial_payload``, kube-proxy's
partial sync), followed by ``-X`` for chains that only removed or changed
service ports had.  Under ``--noflush`` undeclared chains keep their rules, so
a partial payload leaves the tables exactly as the full one would
(tests/unit/test_proxy_partial.py proves it over random change sequences).

Everything here is a pure function of its arguments (no iptables is run); the
helpers at the end read payloads and ``iptables-save`` output (declared and
stale chains, rule counts) or compute the conntrack deletions a change
needs (UDP flows to removed endpoints; TCP connections still opening to them).  The Proxier (nodeagent/proxy.py) applies the result.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Iterable

from nodeagent.errors import AgentConfigError
from nodeagent.proxymodel import AFFINITY_SECONDS, PROTOCOLS, ServicePortInfo, service_ports

__all__ = ["AFFINITY_SECONDS", "PROTOCOLS", "ServicePortInfo", "service_ports", "Fragment", "Globals", "render",
           "render_ports", "render_fragment", "assemble", "partial_payload"]

log = logging.getLogger("kctl.nodeagent.proxy")

PREFIX = "KCTL-"
SERVICES, NODEPORTS, EXTERNAL_SERVICES = "KCTL-SERVICES", "KCTL-NODEPORTS", "KCTL-EXTERNAL-SERVICES"
POSTROUTING, MARK_MASQ = "KCTL-POSTROUTING", "KCTL-MARK-MASQ"
MASQ_MARK = "0x4000"  # the bit kube-proxy uses; our chains live in node netns of their own
TOP_FILTER, TOP_NAT = (SERVICES, EXTERNAL_SERVICES), (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ)


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


# ---------------------------------------------------------------------------- render

def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", f'"{text}"' if " " in text else text]


def _line(chain: str, *parts) -> str:
    words = ["-A", chain]
    for p in parts:
        words.extend(p if isinstance(p, list) else [p])
    return " ".join(words)


@dataclass(frozen=True)
class Globals:
    """What every fragment's rules depend on besides its service port (validated once)."""
    node_ip: str | None
    pod_cidr: str | None = None
    masquerade_cidr: str | None = None

    def __post_init__(self):
        pod_net = ipaddress.ip_network(self.pod_cidr, strict=False) if self.pod_cidr else None
        masq_net = ipaddress.ip_network(self.masquerade_cidr, strict=False) if self.masquerade_cidr else None
        if pod_net and masq_net and pod_net.overlaps(masq_net):
            raise AgentConfigError(f"masquerade CIDR {masq_net} overlaps the pod CIDR {pod_net}")
        if self.node_ip is not None:
            try:
                ok = ipaddress.ip_address(self.node_ip).version == 4
            except ValueError:
                ok = False
            if not ok:
                raise AgentConfigError(f"node IP {self.node_ip!r} is not an IPv4 address")
        object.__setattr__(self, "pod_net", str(pod_net) if pod_net else None)
        object.__setattr__(self, "masq_net", str(masq_net) if masq_net else None)

    @property
    def not_pod(self) -> list[str]:
        return ["!", "-s", self.pod_net] if self.pod_net else []

    @property
    def node_dst(self) -> list[str]:
        return ["-d", f"{self.node_ip}/32"] if self.node_ip else ["-m", "addrtype", "--dst-type", "LOCAL"]


@dataclass(frozen=True)
class Fragment:
    """The rules of one service port: lines in the shared top-level chains (rewritten on every
    sync) and its own chains with their rules (rewritten only when the service port changed)."""
    filter_rules: tuple[str, ...]
    nat_top: tuple[str, ...]
    chains: tuple[str, ...]
    nat_rules: tuple[str, ...]


def _balance(sp: ServicePortInfo, chain: str, eps, cluster_ip: list[str], masq: list[str]) -> list[str]:
    """An SVC/SVL chain: masquerade off-pod ClusterIP clients, affinity checks, then the random choice."""
    out = [_line(chain, cluster_ip, masq, "-j", MARK_MASQ)] if masq else []
    seps = [(ip, port, sp.sep_chain(ip, port)) for ip, port in eps]
    if sp.affinity_seconds:   # a client seen recently goes back to the endpoint it had
        for ip, port, sep in seps:
            out.append(_line(chain, _comment(f"{sp.key} -> {ip}:{port}"), "-m", "recent", "--name", sep,
                             "--rcheck", "--seconds", str(sp.affinity_seconds), "--reap", "-j", sep))
    n = len(seps)
    for i, (ip, port, sep) in enumerate(seps):
        pick = ["-m", "statistic", "--mode", "random", "--probability", f"{1 / (n - i):.10f}"] if i < n - 1 else []
        out.append(_line(chain, _comment(f"{sp.key} -> {ip}:{port}"), pick, "-j", sep))
    return out


def render_fragment(sp: ServicePortInfo, g: Globals) -> Fragment:
    """kube-proxy's per-service-port rules (pkg/proxy/iptables/proxier.go syncProxyRules), see the module doc."""
    proto = ["-p", sp.protocol, "-m", sp.protocol]
    vip = ["-d", f"{sp.cluster_ip}/32"]
    cluster_ip = _comment(f"{sp.key} cluster IP")
    filters, top, chains, rules = [], [], [], []
    if not sp.endpoints and not sp.local_endpoints:
        why = _comment(f"{sp.key} has no endpoints")
        filters.append(_line(SERVICES, why, vip, proto, "--dport", str(sp.port), "-j", "REJECT"))
        if sp.node_port:
            filters.append(_line(EXTERNAL_SERVICES, why, g.node_dst, proto, "--dport", str(sp.node_port),
                                 "-j", "REJECT"))
        return Fragment(tuple(filters), (), (), ())
    no_local = _comment(f"{sp.key} has no local endpoints")
    svc, svl, ext = sp.svc_chain, sp.svl_chain, sp.ext_chain
    # kube-proxy's usesClusterPolicyChain: some traffic of this port goes to all endpoints
    has_svc = bool(sp.endpoints) and (not sp.internal_local or bool(sp.node_port) and not sp.external_local)
    has_svl = sp.uses_local and bool(sp.local_endpoints)
    # ClusterIP
    internal = svl if sp.internal_local else svc
    if sp.internal_local and not has_svl:
        filters.append(_line(SERVICES, no_local, vip, proto, "--dport", str(sp.port), "-j", "DROP"))
    else:
        top.append(_line(SERVICES, cluster_ip, vip, proto, "--dport", str(sp.port), "-j", internal))
    # NodePort
    external_ok = has_svl if sp.external_local else has_svc
    if sp.node_port and not external_ok:
        filters.append(_line(EXTERNAL_SERVICES, no_local, g.node_dst, proto, "--dport", str(sp.node_port),
                             "-j", "DROP"))
    elif sp.node_port:
        top.append(_line(NODEPORTS, _comment(sp.key), proto, "--dport", str(sp.node_port), "-j", ext))
        if not sp.external_local:
            rules.append(_line(ext, _comment(f"masquerade traffic for {sp.key} external destinations"),
                               g.not_pod, "-j", MARK_MASQ))
            rules.append(_line(ext, "-j", svc))
        else:       # client source IP preserved; pods and the node itself still reach every endpoint
            if g.pod_net and has_svc:
                rules.append(_line(ext, _comment(f"pod traffic for {sp.key} external destinations"),
                                   "-s", g.pod_net, "-j", svc))
            rules.append(_line(ext, _comment(f"masquerade LOCAL traffic for {sp.key} external destinations"),
                               "-m", "addrtype", "--src-type", "LOCAL", "-j", MARK_MASQ))
            if has_svc:
                rules.append(_line(ext, _comment(f"route LOCAL traffic for {sp.key} external destinations"),
                                   "-m", "addrtype", "--src-type", "LOCAL", "-j", svc))
            rules.append(_line(ext, "-j", svl))
    masq = ["!", "-s", g.pod_net, *vip, *proto, "--dport", str(sp.port)] if g.pod_net else []
    chains += [svc] if has_svc else []
    chains += [ext] if sp.node_port and external_ok else []
    if has_svc:
        rules += _balance(sp, svc, sp.endpoints, cluster_ip, masq)
    if has_svl:
        chains.append(svl)
        rules += _balance(sp, svl, sp.local_endpoints, cluster_ip, masq if sp.internal_local else [])
    seps = list(sp.endpoints) if has_svc else []
    if has_svl:             # a terminating local fallback may not be among the cluster endpoints
        seps += [e for e in sp.local_endpoints if e not in set(seps)]
    for ip, port in seps:
        chain = sp.sep_chain(ip, port)
        chains.append(chain)
        rules.append(_line(chain, _comment(sp.key), "-s", f"{ip}/32", "-j", MARK_MASQ))
        remember = ["-m", "recent", "--name", chain, "--set"] if sp.affinity_seconds else []
        rules.append(_line(chain, _comment(sp.key), remember, "-p", sp.protocol, "-m", sp.protocol,
                           "-j", "DNAT", "--to-destination", f"{ip}:{port}"))
    return Fragment(tuple(filters), tuple(top), tuple(chains), tuple(rules))


def _fixed_nat(g: Globals) -> list[str]:
    rules = [_line(MARK_MASQ, "-j", "MARK", "--or-mark", MASQ_MARK)]
    if g.pod_net and g.masq_net:
        rules.append(_line(POSTROUTING, _comment(f"pod traffic to {g.masq_net}"),
                           "-s", g.pod_net, "-d", g.masq_net, "-j", "MASQUERADE"))
    return rules + [
        _line(POSTROUTING, "-m", "mark", "!", "--mark", f"{MASQ_MARK}/{MASQ_MARK}", "-j", "RETURN"),
        _line(POSTROUTING, "-j", "MARK", "--xor-mark", MASQ_MARK),
        _line(POSTROUTING, _comment("kctl service traffic requiring SNAT"), "-j", "MASQUERADE", "--random-fully"),
    ]


def _last_nat(g: Globals) -> str:
    return _line(SERVICES, _comment("kctl service nodeports; must be the last rule"), g.node_dst,
                 *([] if g.node_ip else [["!", "-d", "127.0.0.0/8"]]), "-j", NODEPORTS)


def assemble(fragments: Iterable[Fragment], g: Globals, *, changed: set | None = None,
             removed_chains: Iterable[str] = ()) -> str:
    """The iptables-restore payload: the top-level chains always whole; each fragment's own chains
    only if CHANGED is None (a full payload) or the fragment's id() is in CHANGED; then a declaration and
    ``-X`` for each of REMOVED_CHAINS."""
    frags = list(fragments)
    filter_rules = [r for f in frags for r in f.filter_rules]
    nat_chains, nat_rules = list(TOP_NAT), _fixed_nat(g)
    for f in frags:
        nat_rules += f.nat_top
        if changed is None or id(f) in changed:
            nat_chains += f.chains
            nat_rules += f.nat_rules
    removed = list(removed_chains)
    nat_chains += removed
    nat_rules.append(_last_nat(g))
    out = ["*filter", *(f":{c} - [0:0]" for c in TOP_FILTER), *filter_rules, "COMMIT",
           "*nat", *(f":{c} - [0:0]" for c in nat_chains), *nat_rules, *(f"-X {c}" for c in removed), "COMMIT"]
    return "\n".join(out) + "\n"


def render(services: Iterable, endpoints: Iterable, *, node_ip: str | None, pod_cidr: str | None = None,
           masquerade_cidr: str | None = None, node_name: str = "") -> str:
    """The iptables-restore payload for these Services and Endpoints/EndpointSlices (see ``render_ports``)."""
    return render_ports(service_ports(services, endpoints, node_name), node_ip=node_ip, pod_cidr=pod_cidr,
                        masquerade_cidr=masquerade_cidr)


def render_ports(ports: Iterable[ServicePortInfo], *, node_ip: str | None, pod_cidr: str | None = None,
                 masquerade_cidr: str | None = None) -> str:
    """The full iptables-restore payload (``filter`` then ``nat``) for these service ports.

    node_ip: NodePorts answer on this address (like kube-proxy with
    ``--nodeport-addresses`` set to it); None = every local address but 127/8.
    pod_cidr: the CIDR whose sources count as pods (the node's spec.podCIDR, as
    kube-proxy's ``--detect-local-mode=NodeCIDR``, or the cluster CIDR):
    sources outside it are masqueraded on ClusterIPs and NodePorts.  None: no
    ClusterIP masquerade, NodePort traffic always masqueraded.
    masquerade_cidr: pod traffic from pod_cidr to this CIDR is masqueraded to
    the node's address (the lab passes its node subnet).  Must not overlap pod_cidr.
    """
    g = Globals(node_ip, pod_cidr, masquerade_cidr)
    return assemble((render_fragment(sp, g) for sp in ports), g)


def partial_payload(old: dict[str, tuple[ServicePortInfo, Fragment]], new: dict[str, tuple[ServicePortInfo, Fragment]],
                    g: Globals) -> tuple[str, int]:
    """The payload that turns tables holding OLD's rules into NEW's, rewriting only the chains of
    changed service ports (kube-proxy's partial sync): (payload, number of changed ports).
    OLD/NEW map ``key/protocol`` to (info, fragment), in render order; a port whose info did not
    change keeps its very fragment object (``Proxier._fragments_for``), which is how changes are told."""
    changed = [f for k, (sp, f) in new.items() if k not in old or old[k][1] is not f]
    gone = {c for k, (sp, f) in old.items() if k not in new or new[k][1] is not f for c in f.chains}
    removed = sorted(gone - {c for f in changed for c in f.chains})
    n = len(changed) + sum(1 for k in old if k not in new)
    return assemble((f for _, f in new.values()), g, changed={id(f) for f in changed}, removed_chains=removed), n


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


def _used(sp: ServicePortInfo | None) -> set:
    return set(sp.endpoints) | set(sp.local_endpoints) if sp else set()


def tcp_conntrack_deletions(old: dict[str, ServicePortInfo], new: Iterable[ServicePortInfo]) -> list[tuple]:
    """``conntrack -D`` argument lists for the TCP connections still opening
    (SYN_SENT: no answer yet) to endpoints that left the rules.

    A SYN the endpoint dropped (its listen queue was full: busybox ``nc -ll``
    listens with a backlog of 2) is sent again a second later, and the
    retransmission follows the conntrack entry of the first one, DNATed to
    the old endpoint, whatever the rules say now. By then the pod may have
    got SIGTERM (its node waits for every proxy to apply the removal, not for
    SYNs that never reached it: nodeagent/drain.py), and the client is
    refused. Deleting the unanswered entries makes the retransmission a new
    connection that the current rules send to a serving endpoint;
    established connections are left alone. OLD is keyed by
    ``key/protocol``; only TCP ports are looked at."""
    new_tcp = {f"{sp.key}/{sp.protocol}": sp for sp in new if sp.protocol == "tcp"}
    return sorted({("-p", "tcp", "--state", "SYN_SENT", "--dst-nat", ip, "--reply-port-src", str(port))
                   for k, was in old.items() if was.protocol == "tcp"
                   for ip, port in _used(was) - _used(new_tcp.get(k))})


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
        if was.protocol != "udp":
            continue
        now = new_udp.get(k)
        for ip, _ in _used(was) - _used(now):
            out.add(("-p", "udp", "--orig-dst", was.cluster_ip, "--dst-nat", ip))
            if was.node_port:
                out.add(("-p", "udp", "--orig-port-dst", str(was.node_port), "--dst-nat", ip))
    for k, now in new_udp.items():
        if _used(now) and not _used(old.get(k)):
            out.add(("-p", "udp", "--orig-dst", now.cluster_ip, "--orig-port-dst", str(now.port)))
            if now.node_port:
                out.add(("-p", "udp", "--orig-port-dst", str(now.node_port)))
    return sorted(out)
