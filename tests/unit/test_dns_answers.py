"""kctl-dns answers against a table of queries, on CoreDNS's own test data set
(plugin/kubernetes/handler_test.go: svc1, svcempty, svc6, hdls1, hdlsprtls,
external, external-to-service, svc-dual-stack), with the answers its tests
expect, plus pods, PTR, NS and the rcode corner cases."""
from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.index import ClusterIndex, EndpointEntry, Port, ServiceEntry
from clusterdns.resolver import Resolver

SERIAL = 1499347823
SOA = f"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 5"
HTTP = (Port("http", 80, "TCP"),)


def fake_index(**kw) -> ClusterIndex:
    ix = ClusterIndex(clock=lambda: SERIAL, **kw)
    for ns in ("testns", "podns", "kube-system"):
        ix.set_namespace(ns)
    for svc in (
        ServiceEntry("testns", "svc1", cluster_ips=("10.0.0.1",), ports=HTTP),
        ServiceEntry("testns", "svcempty", cluster_ips=("10.0.0.1",), ports=HTTP),
        ServiceEntry("testns", "svc6", cluster_ips=("1234:abcd::1",), ports=HTTP),
        ServiceEntry("testns", "hdls1", headless=True),
        ServiceEntry("testns", "hdlsprtls", headless=True),
        ServiceEntry("testns", "external", type="ExternalName", external_name="ext.interwebs.test", ports=HTTP),
        ServiceEntry("testns", "external-to-service", type="ExternalName",
                     external_name="svc1.testns.svc.cluster.local.", ports=HTTP),
        ServiceEntry("testns", "svc-dual-stack", cluster_ips=("10.0.0.3", "10::3"), ports=HTTP),
        ServiceEntry("kube-system", "kube-dns", cluster_ips=("10.96.0.10",),
                     ports=(Port("dns", 53, "UDP"), Port("dns-tcp", 53, "TCP"))),
    ):
        ix.set_service(svc)
    ix.set_endpoints("testns", "svc1", "Endpoints/testns/svc1", [EndpointEntry("172.0.0.1", "ep1a", HTTP)])
    ix.set_endpoints("testns", "hdls1", "Endpoints/testns/hdls1", [
        EndpointEntry("172.0.0.2", "", HTTP), EndpointEntry("172.0.0.3", "", HTTP),
        EndpointEntry("172.0.0.4", "dup-name", HTTP), EndpointEntry("172.0.0.5", "dup-name", HTTP),
        EndpointEntry("5678:abcd::1", "", HTTP), EndpointEntry("5678:abcd::2", "", HTTP)])
    ix.set_endpoints("testns", "hdlsprtls", "Endpoints/testns/hdlsprtls", [EndpointEntry("172.0.0.20")])
    ix.set_pod("podns", "foo", "10.240.0.1")
    ix.synced = True
    return ix


def resolve(resolver: Resolver, qname: str, qtype: str):
    return resolver.resolve(dns.name.from_text(qname), dns.rdatatype.from_text(qtype))


def lines(rrsets) -> list[str]:
    return sorted(" ".join(line.split()) for rr in rrsets for line in rr.to_text().splitlines())


A, NX, OK = "A", dns.rcode.NXDOMAIN, dns.rcode.NOERROR
S = "svc.cluster.local."

# (qname, qtype, rcode, answer, additional); an empty answer means "SOA in authority".
CASES = [
    # ClusterIP services
    (f"svc1.testns.{S}", "A", OK, [f"svc1.testns.{S} 5 IN A 10.0.0.1"], []),
    (f"svcempty.testns.{S}", "A", OK, [f"svcempty.testns.{S} 5 IN A 10.0.0.1"], []),
    (f"SVC1.TestNS.svc.Cluster.Local.", "A", OK, ["SVC1.TestNS.svc.Cluster.Local. 5 IN A 10.0.0.1"], []),
    (f"svc6.testns.{S}", "AAAA", OK, [f"svc6.testns.{S} 5 IN AAAA 1234:abcd::1"], []),
    (f"svc-dual-stack.testns.{S}", "A", OK, [f"svc-dual-stack.testns.{S} 5 IN A 10.0.0.3"], []),
    (f"svc-dual-stack.testns.{S}", "AAAA", OK, [f"svc-dual-stack.testns.{S} 5 IN AAAA 10::3"], []),
    (f"svc1.testns.{S}", "AAAA", OK, [], []),                      # exists, no AAAA: NODATA
    (f"svc1.testns.{S}", "TXT", OK, [], []),
    (f"svc1.testns.{S}", "MX", OK, [], []),
    (f"svc1.testns.{S}", "SOA", OK, [], []),
    (f"svc1.testns.{S}", "PTR", OK, [], []),
    (f"svc1.testns.{S}", "CNAME", OK, [], []),
    (f"svc0.testns.{S}", "A", NX, [], []),
    (f"svc0.testns.{S}", "AAAA", NX, [], []),
    (f"svc0.testns.{S}", "MX", NX, [], []),
    (f"svc0.svc-nons.{S}", "A", NX, [], []),
    (f"svc0.svc-nons.{S}", "TXT", NX, [], []),
    (f"*.testns.{S}", "A", NX, [], []),                             # no wildcards since CoreDNS 1.9
    (f"a.b.c.svc1.testns.{S}", "A", NX, [], []),                    # too long
    (f"svc1.testns.other.cluster.local.", "A", NX, [], []),
    # SRV
    (f"svc1.testns.{S}", "SRV", OK, [f"svc1.testns.{S} 5 IN SRV 0 100 80 svc1.testns.{S}"],
     [f"svc1.testns.{S} 5 IN A 10.0.0.1"]),
    (f"svc6.testns.{S}", "SRV", OK, [f"svc6.testns.{S} 5 IN SRV 0 100 80 svc6.testns.{S}"],
     [f"svc6.testns.{S} 5 IN AAAA 1234:abcd::1"]),
    (f"_http._tcp.svc1.testns.{S}", "SRV", OK, [f"_http._tcp.svc1.testns.{S} 5 IN SRV 0 100 80 svc1.testns.{S}"],
     [f"svc1.testns.{S} 5 IN A 10.0.0.1"]),
    (f"http.tcp.svc1.testns.{S}", "SRV", OK, [f"http.tcp.svc1.testns.{S} 5 IN SRV 0 100 80 svc1.testns.{S}"],
     [f"svc1.testns.{S} 5 IN A 10.0.0.1"]),
    (f"_http._tcp.svc1.testns.{S}", "A", OK, [f"_http._tcp.svc1.testns.{S} 5 IN A 10.0.0.1"], []),
    (f"_https._tcp.svc1.testns.{S}", "SRV", NX, [], []),
    (f"_http._udp.svc1.testns.{S}", "SRV", NX, [], []),
    (f"svc-dual-stack.testns.{S}", "SRV", OK, [f"svc-dual-stack.testns.{S} 5 IN SRV 0 50 80 svc-dual-stack.testns.{S}"],
     [f"svc-dual-stack.testns.{S} 5 IN A 10.0.0.3", f"svc-dual-stack.testns.{S} 5 IN AAAA 10::3"]),
    (f"kube-dns.kube-system.{S}", "SRV", OK, [f"kube-dns.kube-system.{S} 5 IN SRV 0 50 53 kube-dns.kube-system.{S}"],
     [f"kube-dns.kube-system.{S} 5 IN A 10.96.0.10"]),
    # headless services and endpoints
    (f"hdls1.testns.{S}", "A", OK, [f"hdls1.testns.{S} 5 IN A 172.0.0.{i}" for i in (2, 3, 4, 5)], []),
    (f"hdls1.testns.{S}", "AAAA", OK, [f"hdls1.testns.{S} 5 IN AAAA 5678:abcd::1",
                                       f"hdls1.testns.{S} 5 IN AAAA 5678:abcd::2"], []),
    (f"hdlsprtls.testns.{S}", "A", OK, [f"hdlsprtls.testns.{S} 5 IN A 172.0.0.20"], []),
    (f"hdlsprtls.testns.{S}", "SRV", OK, [], []),                   # port -1 sentinel: no SRV
    (f"_http._tcp.hdls1.testns.{S}", "SRV", OK,
     [f"_http._tcp.hdls1.testns.{S} 5 IN SRV 0 16 80 {h}.hdls1.testns.{S}"
      for h in ("172-0-0-2", "172-0-0-3", "5678-abcd--1", "5678-abcd--2", "dup-name")],
     [f"172-0-0-2.hdls1.testns.{S} 5 IN A 172.0.0.2", f"172-0-0-3.hdls1.testns.{S} 5 IN A 172.0.0.3",
      f"5678-abcd--1.hdls1.testns.{S} 5 IN AAAA 5678:abcd::1",
      f"5678-abcd--2.hdls1.testns.{S} 5 IN AAAA 5678:abcd::2",
      f"dup-name.hdls1.testns.{S} 5 IN A 172.0.0.4", f"dup-name.hdls1.testns.{S} 5 IN A 172.0.0.5"]),
    (f"5678-abcd--2.hdls1.testns.{S}", "AAAA", OK, [f"5678-abcd--2.hdls1.testns.{S} 5 IN AAAA 5678:abcd::2"], []),
    (f"172-0-0-20.hdlsprtls.testns.{S}", "A", OK, [f"172-0-0-20.hdlsprtls.testns.{S} 5 IN A 172.0.0.20"], []),
    (f"172-0-0-2.hdls1.testns.{S}", "A", OK, [f"172-0-0-2.hdls1.testns.{S} 5 IN A 172.0.0.2"], []),
    (f"dup-name.hdls1.testns.{S}", "A", OK, [f"dup-name.hdls1.testns.{S} 5 IN A 172.0.0.4",
                                            f"dup-name.hdls1.testns.{S} 5 IN A 172.0.0.5"], []),
    (f"ep1a.svc1.testns.{S}", "A", OK, [f"ep1a.svc1.testns.{S} 5 IN A 172.0.0.1"], []),
    (f"bogusendpoint.hdls1.testns.{S}", "A", NX, [], []),
    (f"bogusendpoint.svc0.testns.{S}", "A", NX, [], []),
    # ExternalName
    (f"external.testns.{S}", "CNAME", OK, [f"external.testns.{S} 5 IN CNAME ext.interwebs.test."], []),
    (f"external.testns.{S}", "A", OK, [f"external.testns.{S} 5 IN CNAME ext.interwebs.test."], []),
    (f"external.testns.{S}", "SRV", OK, [], []),                  # CNAMEs are dropped for SRV: NODATA
    (f"external-to-service.testns.{S}", "A", OK, [
        f"external-to-service.testns.{S} 5 IN CNAME svc1.testns.{S}", f"svc1.testns.{S} 5 IN A 10.0.0.1"], []),
    (f"endpoint.external.testns.{S}", "CNAME", NX, [], []),
    (f"subdomain.subdomain.external.testns.{S}", "CNAME", NX, [], []),
    # names that exist without records, and the apex
    (S, "A", OK, [], []),
    ("pod.cluster.local.", "A", OK, [], []),
    (f"testns.{S}", "A", OK, [], []),
    (f"testns.{S}", "SRV", OK, [], []),
    (f"nons.{S}", "A", NX, [], []),
    (S, "NS", OK, [], []),
    (f"testns.{S}", "NS", OK, [], []),
    ("foo.cluster.local.", "NS", NX, [], []),
    (f"foo.{S}", "NS", NX, [], []),
    ("foo.cluster.local.", "SOA", OK, [], []),                       # CoreDNS: SOA below the apex is NODATA
    ("cluster.local.", "SOA", OK, [SOA], []),
    ("cluster.local.", "HINFO", OK, [], []),
    ("cluster.local.", "A", OK, [], []),
    ("cluster.local.", "AAAA", OK, [], []),
    ("cluster.local.", "SRV", OK, [], []),
    ("cluster.local.", "TXT", NX, [], []),
    ("cluster.local.", "NS", OK, [f"cluster.local. 5 IN NS kube-dns.kube-system.{S}"],
     [f"kube-dns.kube-system.{S} 5 IN A 10.96.0.10"]),
    ("ns.dns.cluster.local.", "A", OK, ["ns.dns.cluster.local. 5 IN A 10.96.0.10"], []),
    ("dns-version.cluster.local.", "TXT", OK, ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'], []),
    ("dns-version.cluster.local.", "A", NX, [], []),
    # pods (mode verified)
    ("10-240-0-1.podns.pod.cluster.local.", "A", OK, ["10-240-0-1.podns.pod.cluster.local. 5 IN A 10.240.0.1"], []),
    ("10-240-0-1.podns.pod.cluster.local.", "AAAA", OK, [], []),
    ("10-240-0-2.podns.pod.cluster.local.", "A", NX, [], []),
    ("10-240-0-1.testns.pod.cluster.local.", "A", NX, [], []),
    ("podns.pod.cluster.local.", "A", OK, [], []),
    ("nons.pod.cluster.local.", "A", NX, [], []),
    # PTR: ClusterIPs, endpoints, pods (kctl addition)
    ("3.0.0.10.in-addr.arpa.", "PTR", OK, [f"3.0.0.10.in-addr.arpa. 5 IN PTR svc-dual-stack.testns.{S}"], []),
    ("10.0.96.10.in-addr.arpa.", "PTR", OK, [f"10.0.96.10.in-addr.arpa. 5 IN PTR kube-dns.kube-system.{S}"], []),
    ("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa.", "PTR", OK,
     ["3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa. 5 IN PTR "
      f"svc-dual-stack.testns.{S}"], []),
    ("4.0.0.172.in-addr.arpa.", "PTR", OK, [f"4.0.0.172.in-addr.arpa. 5 IN PTR dup-name.hdls1.testns.{S}"], []),
    ("2.0.0.172.in-addr.arpa.", "PTR", OK, [f"2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.hdls1.testns.{S}"], []),
    ("1.0.240.10.in-addr.arpa.", "PTR", OK,
     ["1.0.240.10.in-addr.arpa. 5 IN PTR 10-240-0-1.podns.pod.cluster.local."], []),
]


@pytest.fixture(scope="module")
def resolver():
    return Resolver(fake_index())


@pytest.mark.parametrize("qname,qtype,rcode,answer,additional", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_answer_table(resolver, qname, qtype, rcode, answer, additional):
    got = resolve(resolver, qname, qtype)
    assert not got.outside
    assert (dns.rcode.to_text(got.rcode), lines(got.answer), lines(got.additional)) == \
        (dns.rcode.to_text(rcode), sorted(answer), sorted(additional))
    if not answer:
        assert lines(got.authority) == [SOA]


def test_an_external_cname_asks_for_the_target_outside_the_zone(resolver):
    got = resolve(resolver, f"external.testns.{S}", "A")
    assert got.chase == (dns.name.from_text("ext.interwebs.test."), dns.rdatatype.A)
    assert resolve(resolver, f"external-to-service.testns.{S}", "A").chase is None


@pytest.mark.parametrize("qname,qtype", [
    ("example.com.", "A"), ("kubernetes.io.", "AAAA"), ("local.", "SOA"), ("9.9.9.9.in-addr.arpa.", "PTR"),
    ("0.0.10.in-addr.arpa.", "PTR"), ("3.0.0.10.in-addr.arpa.", "A")])
def test_names_outside_the_zone_are_not_answered_here(resolver, qname, qtype):
    got = resolve(resolver, qname, qtype)
    assert got.outside and not got.answer


def test_zone_transfers_are_refused(resolver):
    assert resolve(resolver, "cluster.local.", "AXFR").rcode == dns.rcode.REFUSED


def test_name_errors_are_servfail_until_the_index_synced():
    r = Resolver(fake_index())
    r.index.synced = False
    assert resolve(r, f"svc0.testns.{S}", "A").rcode == dns.rcode.SERVFAIL
    assert lines(resolve(r, f"svc1.testns.{S}", "A").answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.1"]
    r.index.synced = True
    assert resolve(r, f"svc0.testns.{S}", "A").rcode == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("ttl,soa_ttl", [(30, 30), (0, 0), (600, 300)])
def test_ttl_is_configurable_and_the_soa_ttl_is_capped_at_300(ttl, soa_ttl):
    r = Resolver(fake_index(), ttl=ttl)
    assert lines(resolve(r, f"svc1.testns.{S}", "A").answer) == [f"svc1.testns.{S} {ttl} IN A 10.0.0.1"]
    assert lines(resolve(r, f"svc1.testns.{S}", "AAAA").authority) == [
        f"cluster.local. {soa_ttl} IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 {ttl}"]


def test_another_cluster_domain():
    r = Resolver(fake_index(), zone="Kctl.Example.")
    assert lines(resolve(r, "svc1.testns.svc.kctl.example.", "A").answer) == [
        "svc1.testns.svc.kctl.example. 5 IN A 10.0.0.1"]
    assert resolve(r, f"svc1.testns.{S}", "A").outside


def test_ns_without_the_dns_service_is_ns_dns_at_the_advertised_address():
    ix = fake_index()
    ix.delete_service("kube-system", "kube-dns")
    r = Resolver(ix, ns_addresses=("192.0.2.53",))
    got = resolve(r, "cluster.local.", "NS")
    assert lines(got.answer) == ["cluster.local. 5 IN NS ns.dns.cluster.local."]
    assert lines(got.additional) == ["ns.dns.cluster.local. 5 IN A 192.0.2.53"]
    assert lines(resolve(r, "ns.dns.cluster.local.", "A").answer) == ["ns.dns.cluster.local. 5 IN A 192.0.2.53"]


@pytest.mark.parametrize("mode,qname,rcode,answer", [
    ("insecure", "1-2-3-4.podns.pod.cluster.local.", OK, ["1-2-3-4.podns.pod.cluster.local. 5 IN A 1.2.3.4"]),
    ("insecure", "foo.podns.pod.cluster.local.", NX, []),
    ("insecure", "1-2-3-4.nons.pod.cluster.local.", NX, []),
    ("disabled", "10-240-0-1.podns.pod.cluster.local.", NX, []),
    ("disabled", "podns.pod.cluster.local.", NX, []),
])
def test_pod_modes(mode, qname, rcode, answer):
    got = resolve(Resolver(fake_index(), pods=mode), qname, "A")
    assert (got.rcode, lines(got.answer)) == (rcode, answer)


def test_pod_ptr_only_in_verified_mode():
    assert resolve(Resolver(fake_index(), pods="insecure"), "1.0.240.10.in-addr.arpa.", "PTR").outside


def test_unknown_pod_mode_is_refused():
    with pytest.raises(ValueError, match="pods: unsupported value 'sometimes'"):
        Resolver(fake_index(), pods="sometimes")
