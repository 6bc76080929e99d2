"""kctl-dns over real sockets on 127.0.0.1: UDP and TCP, truncation, bad
queries, the answer cache, metrics, REFUSED without upstream (with proof that
nothing is sent anywhere), and forwarding to a second kctl-dns on loopback."""
from __future__ import annotations

import asyncio
import socket
import sys

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import pytest

from clusterdns.forward import Upstreams
from clusterdns.index import EndpointEntry, ServiceEntry
from clusterdns.metrics import Metrics
from clusterdns.resolver import Resolver
from clusterdns.server import DnsServer
from tests.unit.test_dns_answers import HTTP, fake_index, lines

S = "svc.cluster.local."


async def started(resolver, **kw) -> DnsServer:
    server = DnsServer(resolver, metrics=Metrics(), **kw)
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture
async def server():
    s = await started(Resolver(fake_index()))
    try:
        yield s
    finally:
        s.close()


async def ask(port: int, qname: str, qtype: str = "A", *, tcp: bool = False, **make) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, **make)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", timeout=5, port=port)
    return await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=port)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_answers_over_udp_and_tcp(server, tcp):
    r = await ask(server.port, f"svc1.testns.{S}", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and not r.flags & dns.flags.RA
    assert lines(r.answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.1"]
    r = await ask(server.port, f"svc0.testns.{S}", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and lines(r.authority)[0].startswith("cluster.local. 5 IN SOA")
    proto = "tcp" if tcp else "udp"
    assert server.metrics.value("kctl_dns_queries_total", proto=proto, type="A", rcode="NOERROR") == 1
    assert server.metrics.value("kctl_dns_queries_total", proto=proto, type="A", rcode="NXDOMAIN") == 1
    assert server.metrics.value("kctl_dns_query_duration_seconds_count", proto=proto) == 2


async def test_tcp_answers_several_queries_on_one_connection(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for name in ("svc1", "svc6", "svc0"):
            q = dns.message.make_query(f"{name}.testns.{S}", "A")
            wire = q.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        answers = []
        for _ in range(3):
            size = int.from_bytes(await reader.readexactly(2), "big")
            answers.append(dns.message.from_wire(await reader.readexactly(size)))
    finally:
        writer.close()
    assert [a.rcode() for a in answers] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    assert [lines(a.answer) for a in answers[:2]] == [[f"svc1.testns.{S} 5 IN A 10.0.0.1"], []]


async def test_large_udp_answers_are_truncated_so_the_client_retries_over_tcp():
    ix = fake_index()
    ix.set_service(ServiceEntry("testns", "big", headless=True))
    ix.set_endpoints("testns", "big", "Endpoints/testns/big",
                     [EndpointEntry(f"10.244.{i // 200}.{i % 200 + 1}") for i in range(60)])
    s = await started(Resolver(ix))
    try:
        plain = await ask(s.port, f"big.testns.{S}")
        assert plain.flags & dns.flags.TC and not plain.answer and len(plain.to_wire()) <= 512
        edns = await ask(s.port, f"big.testns.{S}", use_edns=0, payload=1232)
        assert not edns.flags & dns.flags.TC and len(lines(edns.answer)) == 60
        tcp = await ask(s.port, f"big.testns.{S}", tcp=True)
        assert not tcp.flags & dns.flags.TC and len(lines(tcp.answer)) == 60
        q = dns.message.make_query(f"big.testns.{S}", "A")
        resp, used_tcp = await dns.asyncquery.udp_with_fallback(q, "127.0.0.1", timeout=5, port=s.port)
        assert used_tcp and len(lines(resp.answer)) == 60
        assert s.metrics.value("kctl_dns_truncated_responses_total") == 2
    finally:
        s.close()


async def test_answers_follow_index_changes_despite_the_cache(server):
    assert lines((await ask(server.port, f"svc1.testns.{S}")).answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.1"]
    assert lines((await ask(server.port, f"svc1.testns.{S}")).answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.1"]
    assert server.metrics.value("kctl_dns_cache_hits_total") == 1
    server.resolver.index.set_service(ServiceEntry("testns", "svc1", cluster_ips=("10.0.0.9",), ports=HTTP))
    assert lines((await ask(server.port, f"svc1.testns.{S}")).answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.9"]
    server.resolver.index.delete_service("testns", "svc1")
    assert (await ask(server.port, f"svc1.testns.{S}")).rcode() == dns.rcode.NXDOMAIN


class _Broken(Resolver):
    def resolve(self, qname, qtype):
        if qname.labels[0] == b"boom":
            raise RuntimeError("a bug")
        return super().resolve(qname, qtype)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_failing_answer_is_servfail_and_the_server_keeps_answering(tcp):
    s = await started(_Broken(fake_index()))
    try:
        assert (await ask(s.port, f"boom.testns.{S}", tcp=tcp)).rcode() == dns.rcode.SERVFAIL
        assert lines((await ask(s.port, f"svc1.testns.{S}", tcp=tcp)).answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.1"]
    finally:
        s.close()


async def test_the_cache_can_be_turned_off():
    s = await started(Resolver(fake_index()), cache_size=0)
    try:
        for _ in range(2):
            assert lines((await ask(s.port, f"svc1.testns.{S}")).answer) == [f"svc1.testns.{S} 5 IN A 10.0.0.1"]
        assert s.metrics.value("kctl_dns_cache_hits_total") == 0
    finally:
        s.close()


async def test_a_cached_answer_carries_the_new_query_id(server):
    first = await ask(server.port, f"svc1.testns.{S}")
    second = await ask(server.port, f"svc1.testns.{S}")         # asyncquery checks the ID matches
    assert first.id != second.id and lines(first.answer) == lines(second.answer)


def _udp_exchange(port: int, *wires: bytes) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for wire in wires:
            sock.sendto(wire, ("127.0.0.1", port))
        return [sock.recvfrom(65535)[0]]


async def test_garbage_gets_formerr_and_too_short_garbage_is_dropped(server):
    valid = dns.message.make_query(f"svc1.testns.{S}", "A")
    [first] = await asyncio.to_thread(_udp_exchange, server.port, b"\x12", valid.to_wire())
    assert dns.message.from_wire(first).id == valid.id          # the 1-byte datagram got no answer
    garbage = b"\x12\x34\x01\x00" + b"\xff" * 16
    [reply] = await asyncio.to_thread(_udp_exchange, server.port, garbage)
    msg = dns.message.from_wire(reply)
    assert (msg.id, msg.rcode(), msg.flags & dns.flags.QR) == (0x1234, dns.rcode.FORMERR, dns.flags.QR)


def _notify() -> dns.message.Message:
    q = dns.message.make_query(f"svc1.testns.{S}", "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    return q


@pytest.mark.parametrize("make,rcode", [
    (_notify, dns.rcode.NOTIMP),
    (lambda: dns.message.make_query(f"svc1.testns.{S}", "A", use_edns=1), dns.rcode.BADVERS),
    (lambda: dns.message.make_query(f"svc1.testns.{S}", "A", rdclass=dns.rdataclass.CH), dns.rcode.REFUSED),
], ids=["notify", "edns1", "chaos"])
async def test_queries_we_do_not_serve(server, make, rcode):
    r = await dns.asyncquery.udp(make(), "127.0.0.1", timeout=5, port=server.port)
    assert r.rcode() == rcode and not r.answer


# ------------------------------------------------------------ no upstream: nothing leaves

_WATCH: dict = {}


def _audit(event: str, args) -> None:
    """Abort (and record) any send or connect to an address the test did not allow."""
    allowed = _WATCH.get("allowed")
    if allowed is None or event not in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        return
    address = args[-1] if event != "socket.sendmsg" else args[1]
    if isinstance(address, tuple) and tuple(address[:2]) in allowed:
        return
    _WATCH["violations"].append((event, address))
    raise RuntimeError(f"blocked {event} to {address!r}")


sys.addaudithook(_audit)


def _plain_query(port: int, source_port: int, qname: str, tcp: bool) -> dns.message.Message:
    q = dns.message.make_query(qname, "A")
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", timeout=5, port=port, source="127.0.0.1", source_port=source_port)
    return dns.query.udp(q, "127.0.0.1", timeout=5, port=port, source="127.0.0.1", source_port=source_port)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("qname", ["example.com.", "kubernetes.default.svc.other.", "4.4.8.8.in-addr.arpa."])
async def test_without_upstream_outside_names_are_refused_and_no_packet_is_sent(server, qname, tcp):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        client_port = probe.getsockname()[1]
    _WATCH.update(allowed={("127.0.0.1", server.port), ("127.0.0.1", client_port)}, violations=[])
    try:
        r = await asyncio.to_thread(_plain_query, server.port, client_port, qname, tcp)
    finally:
        violations = _WATCH.pop("violations")
        _WATCH.pop("allowed")
    assert r.rcode() == dns.rcode.REFUSED and not r.answer and not r.flags & dns.flags.AA
    assert violations == []
    assert server.upstreams is None


def test_the_audit_guard_does_block_other_destinations():
    _WATCH.update(allowed=set(), violations=[])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(RuntimeError, match="blocked"):
            sock.sendto(b"x", ("127.0.0.1", 9))
    finally:
        violations = _WATCH.pop("violations")
        _WATCH.pop("allowed")
    assert violations == [("socket.sendto", ("127.0.0.1", 9))]


# ------------------------------------------------------------ forwarding to a local upstream

@pytest.fixture
async def upstream():
    s = await started(Resolver(fake_index(), zone="example.test"))
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_outside_names_are_forwarded_to_the_configured_upstream(upstream, tcp):
    metrics = Metrics()
    front = await started(Resolver(fake_index()),
                          upstreams=Upstreams([("127.0.0.1", upstream.port)], timeout=5, metrics=metrics))
    try:
        r = await ask(front.port, "svc1.testns.svc.example.test.", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR
        assert lines(r.answer) == ["svc1.testns.svc.example.test. 5 IN A 10.0.0.1"]
        r = await ask(front.port, "nope.testns.svc.example.test.", tcp=tcp)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert metrics.value("kctl_dns_forward_requests_total", upstream=f"127.0.0.1:{upstream.port}",
                             result="ok") == 2
        assert upstream.metrics.value("kctl_dns_queries_total", proto="tcp" if tcp else "udp",
                                      type="A", rcode="NOERROR") == 1
    finally:
        front.close()


async def test_an_external_name_is_completed_by_the_upstream(upstream):
    ix = fake_index()
    ix.set_service(ServiceEntry("testns", "ext", type="ExternalName",
                                external_name="svc6.testns.svc.example.test"))
    front = await started(Resolver(ix), upstreams=Upstreams([("127.0.0.1", upstream.port)], timeout=5))
    try:
        r = await ask(front.port, f"ext.testns.{S}", "AAAA")
        assert lines(r.answer) == [f"ext.testns.{S} 5 IN CNAME svc6.testns.svc.example.test.",
                                   "svc6.testns.svc.example.test. 5 IN AAAA 1234:abcd::1"]
    finally:
        front.close()


async def test_a_refusing_upstream_is_skipped(upstream):
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        closed = ("127.0.0.1", gone.getsockname()[1])          # nothing listens there: TCP connect refused
    metrics = Metrics()
    front = await started(Resolver(fake_index()),
                          upstreams=Upstreams([closed, ("127.0.0.1", upstream.port)], timeout=5, metrics=metrics))
    try:
        r = await ask(front.port, "svc1.testns.svc.example.test.", tcp=True)     # forwarded over TCP too
        assert lines(r.answer) == ["svc1.testns.svc.example.test. 5 IN A 10.0.0.1"]
        assert metrics.value("kctl_dns_forward_requests_total", upstream=f"{closed[0]}:{closed[1]}",
                             result="error") == 1
    finally:
        front.close()


async def test_a_silent_upstream_times_out_into_servfail():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        dead = ("127.0.0.1", silent.getsockname()[1])
        metrics = Metrics()
        alone = await started(Resolver(fake_index()), upstreams=Upstreams([dead], timeout=0.2, metrics=metrics))
        try:
            assert (await ask(alone.port, "example.com.")).rcode() == dns.rcode.SERVFAIL
            assert metrics.value("kctl_dns_forward_requests_total", upstream=f"{dead[0]}:{dead[1]}",
                                 result="timeout") == 1
        finally:
            alone.close()


async def test_too_many_forwards_in_flight_are_refused(upstream):
    front = await started(Resolver(fake_index()),
                          upstreams=Upstreams([("127.0.0.1", upstream.port)], max_concurrent=0))
    try:
        assert (await ask(front.port, "svc1.testns.svc.example.test.")).rcode() == dns.rcode.REFUSED
    finally:
        front.close()


async def test_binding_a_busy_port_names_the_flag():
    from machinery.errors import HostError
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        s = DnsServer(Resolver(fake_index()))
        with pytest.raises(HostError, match=f"--listen 127.0.0.1:{port}: cannot bind"):
            await s.start("127.0.0.1", port)


async def test_tcp_connections_beyond_the_cap_are_closed_and_udp_still_answers():
    s = await started(Resolver(fake_index()), max_tcp=2)
    held = [await asyncio.open_connection("127.0.0.1", s.port) for _ in range(2)]
    try:
        while len(s._conns) < 2:                       # both accepted and being served
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        try:
            assert await reader.read() == b""          # closed without an answer
        except ConnectionResetError:
            pass
        finally:
            writer.close()
        assert s.metrics.value("kctl_dns_tcp_refused_connections_total") == 1
        assert (await ask(s.port, f"svc1.testns.{S}")).rcode() == dns.rcode.NOERROR
        held[0][1].close()                             # a slot frees up: TCP answers again
        await held[0][1].wait_closed()
        while len(s._conns) > 1:
            await asyncio.sleep(0.01)
        assert (await ask(s.port, f"svc1.testns.{S}", tcp=True)).rcode() == dns.rcode.NOERROR
    finally:
        for _, w in held:
            w.close()
        s.close()


async def test_a_tcp_client_that_does_not_read_its_answers_is_dropped():
    s = await started(Resolver(fake_index()), tcp_idle=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        wire = dns.message.make_query(f"svc1.testns.{S}", "A").to_wire()
        for _ in range(300_000):                       # far more answers than the socket buffers hold
            writer.write(len(wire).to_bytes(2, "big") + wire)
        async def dropped():
            while not s._conns:
                await asyncio.sleep(0.01)
            while s._conns:                            # the server gives up on it
                await asyncio.sleep(0.05)
        await asyncio.wait_for(dropped(), 30)          # a guard against hanging, not a time limit
    finally:
        writer.close()
        s.close()
