"""Answers for the cluster zone, the way CoreDNS's kubernetes plugin gives them.

Read next to coredns/plugin/kubernetes (handler.go, parse.go, kubernetes.go,
reverse.go, ns.go) and plugin/backend_lookup.go; the names below follow
theirs. `Resolver.resolve(qname, qtype)` is synchronous and pure (index in,
records out); the server adds transport, EDNS, truncation and forwarding.

Names in the zone (DOMAIN, `cluster.local` by default), parsed right to left
as parseRequest does:
* `SVC.NS.svc.DOMAIN` A/AAAA: the ClusterIPs; a headless service: its ready
  endpoint addresses; ExternalName: a CNAME to the external name (followed
  inside the zone; outside it the server asks an upstream if one is
  configured, else the CNAME is answered alone).
* `HOST.SVC.NS.svc.DOMAIN`: endpoints whose hostname (or dashed IP, e.g.
  `10-244-1-5`) is HOST — for every service, headless or not.
* `_PORT._PROTO.SVC.NS.svc.DOMAIN` (the underscores are optional, as in
  CoreDNS) SRV: priority 0, weight 100/n, the port, and as target the
  service name (ClusterIP) or each endpoint's name (headless), with the
  addresses in the additional section; `SVC.NS.svc.DOMAIN` SRV lists every
  port. A/AAAA on an SRV name answer the addresses.
* `A-B-C-D.NS.pod.DOMAIN`: pod mode `verified` (kctl's default) answers only
  if a pod in NS has that IP; `insecure` answers any IP (kube-dns
  compatibility); `disabled` (CoreDNS's plugin default) answers NXDOMAIN.
* `dns-version.DOMAIN` TXT "1.1.0" (schema version of the Kubernetes DNS
  specification); DOMAIN SOA and NS (the NS is the `kube-system/kube-dns`
  service when it exists, else `ns.dns.DOMAIN` with the advertised address).
* PTR `D.C.B.A.in-addr.arpa` (and ip6.arpa): a ClusterIP gives its service,
  a ready endpoint address gives `HOST.SVC.NS.svc.DOMAIN` for every service
  it backs. kctl addition (CoreDNS passes such queries on): in pod mode
  verified, a pod IP that backs no service gives `A-B-C-D.NS.pod.DOMAIN`.
  Other reverse names are "outside" (CoreDNS's `fallthrough in-addr.arpa
  ip6.arpa`): forwarded, or REFUSED with no upstream.

Response codes, exactly as handler.go decides them: a name that exists with
no record of the asked type is NOERROR/NODATA with the SOA in authority
(`NS.svc.DOMAIN`, `svc.DOMAIN`, `pod.DOMAIN`, DOMAIN itself, AAAA of an
IPv4-only service...); a name that does not exist is NXDOMAIN with the SOA
— SERVFAIL instead until the informers have synced; a SOA query below the
apex is NODATA whatever the name; TXT is NODATA only for names with records
(so DOMAIN or `NS.svc.DOMAIN` TXT is NXDOMAIN); a headless service without
ready endpoints, a ClusterIP service without ports, unknown or too-long
shapes (more than two labels left of the service) are NXDOMAIN; AXFR/IXFR
are REFUSED.
Wildcard queries (`*.NS.svc...`) are not supported: CoreDNS removed them in
1.9.0 and answers `*` as a literal label, i.e. NXDOMAIN, as we do.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from clusterdns.index import NO_PORT, ClusterIndex, EndpointEntry

IN = dns.rdataclass.IN
T = dns.rdatatype
POD_MODES = ("disabled", "insecure", "verified")
DNS_SCHEMA_VERSION = "1.1.0"
SCHEMA_TTL = 28800
MAX_CNAME_CHAIN = 10
REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


class _Memo(dict):
    """A bounded memo of immutable values (names, address rdata) built once, not per query."""

    def __init__(self, make, limit: int = 65536):
        super().__init__()
        self.make, self.limit = make, limit

    def __missing__(self, key):
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.make(key)
        return value


NAMES = _Memo(lambda text: dns.name.from_text(text if text.endswith(".") else text + "."))
ADDRESSES = _Memo(lambda ip: AAAA(IN, T.AAAA, ip) if ":" in ip else A(IN, T.A, ip))


@dataclass(frozen=True)
class Rec:
    """CoreDNS's msg.Service: an address or a name, a port, and the record's own name."""
    host: str
    target: str
    port: int = 0


@dataclass
class Answer:
    rcode: int = dns.rcode.NOERROR
    answer: list = field(default_factory=list)       # dns.rrset.RRset, in order
    authority: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    outside: bool = False          # not ours: forward to an upstream, or REFUSED
    chase: tuple | None = None     # (name, qtype) of a CNAME target outside the zone
    authoritative: bool = True


def host_type(host: str) -> int:
    """A, AAAA or CNAME, as msg.Service.HostType() classifies a host."""
    if ":" in host:
        return T.AAAA if _is_ip(host) else T.CNAME
    if host[-1:].isdigit() and _is_ip(host):
        return T.A
    return T.CNAME


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def endpoint_hostname(e: EndpointEntry) -> str:
    """CoreDNS's endpointHostname: the hostname, else the dashed IP."""
    if e.hostname:
        return e.hostname
    return dashed(e.ip)


def dashed(ip: str) -> str:
    if "." in ip:
        return ip.replace(".", "-")
    name = ip.replace(":", "-")
    return name + "0" if name.endswith("-") else name


def _strip(label: str) -> str:
    return label[1:] if label.startswith("_") else label


def _matches(want: str, have: str) -> bool:
    return not want or want == have.lower()


class _Records:
    """Records in answer order, grouped into RRsets (one per owner and type) at the end."""

    def __init__(self):
        self.rrsets: dict[tuple, dns.rrset.RRset] = {}

    def add(self, name: dns.name.Name, ttl: int, rdata) -> None:
        key = (name, rdata.rdtype)
        rrset = self.rrsets.get(key)
        if rrset is None:
            rrset = self.rrsets[key] = dns.rrset.RRset(name, IN, rdata.rdtype)
            rrset.update_ttl(ttl)
        rrset.add(rdata)

    def extend(self, rrsets) -> None:
        for rrset in rrsets:
            for rd in rrset:
                self.add(rrset.name, rrset.ttl, rd)

    def __bool__(self) -> bool:
        return bool(self.rrsets)

    def list(self) -> list:
        return list(self.rrsets.values())


class Resolver:
    def __init__(self, index: ClusterIndex, *, zone: str = "cluster.local", ttl: int = 5,
                 pods: str = "verified", ns_service: tuple[str, str] | None = ("kube-system", "kube-dns"),
                 ns_addresses: tuple[str, ...] = ()):
        if pods not in POD_MODES:
            raise ValueError(f"pods: unsupported value {pods!r}: supported values: {', '.join(POD_MODES)}")
        self.index = index
        self.zone = dns.name.from_text(zone.strip(".").lower() + ".")
        self.zone_text = self.zone.to_text()
        self._zlen = len(self.zone.labels)
        self.ttl, self.pods = ttl, pods
        self.ns_service, self.ns_addresses = ns_service, tuple(ns_addresses)
        self._soas: dict[tuple, dns.rrset.RRset] = {}

    # ------------------------------------------------------------ entry point

    def resolve(self, qname: dns.name.Name, qtype: int) -> Answer:
        if qname.is_subdomain(self.zone):
            return self._cluster(qname, qtype)
        if qtype == T.PTR and any(qname.is_subdomain(z) for z in REVERSE_ZONES):
            names = self._reverse(qname)
            if names:
                out = _Records()
                for n in names:
                    out.add(qname, self.ttl, PTR(IN, T.PTR, NAMES[n]))
                return Answer(answer=out.list())
        return Answer(outside=True, authoritative=False)

    def _cluster(self, qname: dns.name.Name, qtype: int) -> Answer:
        segs = [label.decode("latin-1").lower() for label in qname.labels[:-self._zlen]]
        out, extra, chase = _Records(), _Records(), None
        if qtype in (T.AXFR, T.IXFR):
            return Answer(rcode=dns.rcode.REFUSED, authoritative=False)
        if qtype in (T.A, T.AAAA):
            exists, chase = self._address(qname, segs, qtype, [], out)
        elif qtype == T.SRV:
            exists = self._srv(qname, segs, out, extra)
        elif qtype == T.TXT:
            exists = self._txt(qname, segs, out)
        elif qtype == T.CNAME:
            recs = self._services(segs, qtype)
            exists = recs is not None
            if recs and host_type(recs[0].host) == T.CNAME:
                out.add(qname, self.ttl, CNAME(IN, T.CNAME, NAMES[recs[0].host]))
        elif qtype == T.PTR:
            exists = self._records(segs) is not None
        elif qtype == T.SOA:
            exists = True
            if not segs:
                out.add(qname, min(self.ttl, 300), self._soa_rdata())
        elif qtype == T.NS and not segs:
            exists = True
            for name, ip in self._ns_addrs():
                out.add(qname, self.ttl, NS(IN, T.NS, NAMES[name]))
                extra.add(NAMES[name], self.ttl, ADDRESSES[ip])
        else:               # MX, NS below the apex, anything else: a fake A lookup tells NODATA from NXDOMAIN
            exists = self._services(segs, T.A) is not None
        if not exists:
            rcode = dns.rcode.NXDOMAIN if self.index.synced else dns.rcode.SERVFAIL
            return Answer(rcode=rcode, authority=[self._soa(qname)])
        if not out:
            return Answer(authority=[self._soa(qname)])
        return Answer(answer=out.list(), additional=extra.list(), chase=chase)

    # ------------------------------------------------------------ records by type

    def _address(self, qname, segs, qtype, previous: list, out: _Records) -> tuple[bool, tuple | None]:
        """plugin.A / plugin.AAAA: addresses, CNAMEs followed inside the zone."""
        recs = self._services(segs, qtype)
        if recs is None:
            return False, None
        seen, chase = set(), None
        for r in recs:
            kind = host_type(r.host)
            if kind == T.CNAME:
                target = NAMES[r.host]
                if target.is_subdomain(qname) or len(previous) > MAX_CNAME_CHAIN or target in previous:
                    continue
                cname = CNAME(IN, T.CNAME, target)
                if target.is_subdomain(self.zone):
                    sub = _Records()
                    segs2 = [lb.decode("latin-1").lower() for lb in target.labels[:-self._zlen]]
                    ok, sub_chase = self._address(target, segs2, qtype, previous + [target], sub)
                    if ok and sub:
                        out.add(qname, self.ttl, cname)
                        out.extend(sub.list())
                        chase = chase or sub_chase
                    continue
                out.add(qname, self.ttl, cname)
                chase = chase or (target, qtype)
            elif kind == qtype and r.host not in seen:
                seen.add(r.host)
                out.add(qname, self.ttl, ADDRESSES[r.host])
        return True, chase

    def _srv(self, qname, segs, out: _Records, extra: _Records) -> bool:
        """plugin.SRV: weights split 100 between the records, targets with their addresses."""
        recs = self._services(segs, T.SRV)
        if recs is None:
            return False
        total = 100 * len(recs)
        weight = max(1, math.floor(100.0 / total * 100)) if total else 0
        dup: set = set()
        for r in recs:
            if r.port == NO_PORT:
                continue
            target = NAMES[r.target]
            if (target, r.port) not in dup:
                dup.add((target, r.port))
                out.add(qname, self.ttl, SRV(IN, T.SRV, 0, weight, r.port, target))
            if (target, r.host) not in dup:
                dup.add((target, r.host))
                extra.add(target, self.ttl, ADDRESSES[r.host])
        return True

    def _txt(self, qname, segs, out: _Records) -> bool:
        """Only dns-version.DOMAIN has a TXT; other names with records are NODATA."""
        if segs == ["dns-version"]:
            out.add(qname, SCHEMA_TTL, TXT(IN, T.TXT, [DNS_SCHEMA_VERSION]))
            return True
        return bool(self._records(segs))

    def _soa_rdata(self) -> SOA:
        z = self.zone
        return SOA(IN, T.SOA, dns.name.Name((b"ns", b"dns") + z.labels),
                   dns.name.Name((b"hostmaster",) + z.labels),
                   self.index.modified & 0xFFFFFFFF, 7200, 1800, 86400, self.ttl)

    def _soa(self, qname: dns.name.Name):
        """The zone's SOA RRset, owned by the zone in the query's case; rebuilt when the serial moves."""
        key = (qname.labels[-self._zlen:], self.index.modified)
        rrset = self._soas.get(key)
        if rrset is None:
            if len(self._soas) > 64:
                self._soas.clear()
            rrset = self._soas[key] = dns.rrset.from_rdata_list(
                dns.name.Name(key[0]), min(self.ttl, 300), [self._soa_rdata()])
        return rrset

    def _ns_addrs(self) -> list[tuple[str, str]]:
        """(name, address) of this DNS service: the kube-dns Service if it exists, else ns.dns.DOMAIN."""
        svc = self.index.service(*self.ns_service) if self.ns_service else None
        if svc is None:
            return [(f"ns.dns.{self.zone_text}", ip) for ip in self.ns_addresses]
        name = f"{svc.name}.{svc.namespace}.svc.{self.zone_text}"
        if svc.headless:
            return [(f"{endpoint_hostname(e)}.{name}", e.ip)
                    for e in self.index.endpoints(svc.namespace, svc.name)]
        return [(name, ip) for ip in svc.cluster_ips]

    # ------------------------------------------------------------ Kubernetes.Services / Records

    def _services(self, segs: list[str], qtype: int) -> list[Rec] | None:
        """Records of a name (None: the name does not exist)."""
        if segs == ["ns", "dns"]:
            want = T.A if qtype == T.A else T.AAAA if qtype == T.AAAA else None
            return [Rec(ip, "") for _, ip in self._ns_addrs() if host_type(ip) == want]
        recs = self._records(segs)
        if qtype == T.SRV and recs:
            recs = [r for r in recs if host_type(r.host) != T.CNAME]
        return recs

    def _records(self, segs: list[str]) -> list[Rec] | None:
        """parseRequest + Records: the shapes of names under svc and pod."""
        if not segs or segs in (["svc"], ["pod"]):
            return []
        kind, namespace = segs[-1], segs[-2] if len(segs) > 1 else ""
        if kind not in ("svc", "pod") or len(segs) > 5:
            return None
        service = segs[-3] if len(segs) > 2 else ""
        endpoint = port = proto = ""
        if len(segs) == 4:
            endpoint = segs[0]
        elif len(segs) == 5:
            port, proto = _strip(segs[0]), _strip(segs[1])
        if not self.index.has_namespace(namespace):
            return None
        if kind == "pod":
            return self._pods(namespace, service)
        return self._find_services(namespace, service, endpoint, port, proto)

    def _pods(self, namespace: str, podname: str) -> list[Rec] | None:
        if self.pods == "disabled":
            return None
        if not podname:
            return []
        if podname.count("-") == 3 and "--" not in podname:
            ip = podname.replace("-", ".")
        else:
            ip = podname.replace("-", ":")
        target = f"{podname}.{namespace}.pod.{self.zone_text}"
        if self.pods == "insecure":
            return [Rec(ip, target)] if _is_ip(ip) else None
        recs = [Rec(ip, target) for ns, _ in self.index.pods_with_ip(ip) if ns == namespace]
        return recs or None

    def _find_services(self, namespace, service, endpoint, port, proto) -> list[Rec] | None:
        if not service:
            return []
        svc = self.index.service(namespace, service)
        if svc is None:
            return None
        base = f"{svc.name}.{svc.namespace}.svc.{self.zone_text}"
        if svc.type == "ExternalName":
            if endpoint or port or proto or not svc.external_name \
                    or host_type(svc.external_name) != T.CNAME:
                return None
            return [Rec(svc.external_name, base)]
        found = False
        recs = []
        if svc.headless or endpoint:
            for e in self.index.endpoints(svc.namespace, svc.name):
                name = endpoint_hostname(e)
                if endpoint and endpoint != name.lower():
                    continue
                for p in e.ports:
                    if _matches(port, p.name) and _matches(proto, p.protocol):
                        found = True
                        recs.append(Rec(e.ip, f"{name}.{base}", p.port))
            return recs if found else None
        for p in svc.ports:
            if _matches(port, p.name) and _matches(proto, p.protocol):
                found = True
                recs.extend(Rec(ip, base, p.port) for ip in svc.cluster_ips)
        return recs if found else None

    # ------------------------------------------------------------ reverse

    def _reverse(self, qname: dns.name.Name) -> list[str]:
        try:
            ip = dns.reversename.to_address(qname)
        except (dns.exception.DNSException, ValueError):
            return []
        svcs = self.index.services_with_ip(ip)
        if svcs:
            return [f"{svcs[0].name}.{svcs[0].namespace}.svc.{self.zone_text}"]
        names = [f"{endpoint_hostname(e)}.{svc}.{ns}.svc.{self.zone_text}"
                 for ns, svc, e in self.index.endpoints_with_ip(ip)]
        if not names and self.pods == "verified":
            names = [f"{dashed(ip)}.{ns}.pod.{self.zone_text}" for ns, _ in self.index.pods_with_ip(ip)]
        return list(dict.fromkeys(names))


