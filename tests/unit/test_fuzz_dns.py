"""Fuzzing the DNS server: whatever arrives on the wire, `respond` answers
bytes that parse as a response to the same ID, or drops the packet; it
never raises (an exception in datagram_received would close the UDP
socket). Over real sockets, garbage and a lying TCP length prefix leave the
server answering. Budget: tests/unit/fuzzing.py."""
from __future__ import annotations

import asyncio
import inspect
import socket

import dns.flags
import dns.message
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from clusterdns.metrics import Metrics
from clusterdns.resolver import Resolver
from clusterdns.server import DnsServer
from tests.unit.fuzzing import FUZZ, Slowest
from tests.unit.test_dns_answers import fake_index

SLOW = Slowest("dns")
SERVER = DnsServer(Resolver(fake_index()), metrics=Metrics())
NAMES = ["svc1.testns.svc.cluster.local.", "hdls1.testns.svc.cluster.local.", "example.com.",
         "_http._tcp.svc1.testns.svc.cluster.local.", "1.0.0.10.in-addr.arpa.", "."]


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(SLOW.report())


def check(wire: bytes, proto: str) -> None:
    with SLOW.timed(wire):
        out = SERVER.respond(wire, proto)
    assert not inspect.isawaitable(out)          # no upstreams: nothing is deferred
    if out is None:
        return
    resp = dns.message.from_wire(out)
    assert resp.flags & dns.flags.QR
    assert out[:2] == wire[:2]


@st.composite
def mutated_query(draw):
    q = dns.message.make_query(draw(st.sampled_from(NAMES)), draw(st.sampled_from(["A", "AAAA", "SRV", "PTR",
                                                                                 "TXT", "ANY", "SOA"])),
                               use_edns=draw(st.sampled_from([None, 0, 1])))
    raw = bytearray(q.to_wire())
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            raw[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:]
            if not raw:
                break
        else:
            raw[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["udp", "tcp"]))
@example(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", "udp")   # pointer loop
@example(b"\x00" * 11, "udp")
@example(b"", "tcp")
def test_random_packets(wire, proto):
    check(wire, proto)


@FUZZ
@given(mutated_query(), st.sampled_from(["udp", "tcp"]))
def test_mutated_queries(wire, proto):
    check(wire, proto)


async def test_garbage_over_the_sockets_leaves_the_server_answering():
    server = DnsServer(Resolver(fake_index()), metrics=Metrics(), tcp_idle=0.5)
    await server.start("127.0.0.1", 0)
    try:
        loop = asyncio.get_running_loop()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setblocking(False)
        for junk in (b"", b"\xff" * 3, b"\x00" * 12 + b"\xc0\x0c" * 200, bytes(range(256)) * 2):
            udp.sendto(junk, ("127.0.0.1", server.port))
        # a TCP client announcing 65535 bytes and sending 3, then going quiet
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\xff\xffabc")
        await writer.drain()
        q = dns.message.make_query(NAMES[0], "A")
        udp.sendto(q.to_wire(), ("127.0.0.1", server.port))
        data = await asyncio.wait_for(loop.sock_recv(udp, 4096), 5)
        while dns.message.from_wire(data).id != q.id:      # answers to the junk may come first
            data = await asyncio.wait_for(loop.sock_recv(udp, 4096), 5)
        assert [str(r) for r in dns.message.from_wire(data).answer][0].endswith("10.0.0.1")
        assert await asyncio.wait_for(reader.read(), 5) == b""       # the idle liar is closed
        writer.close()
        udp.close()
    finally:
        server.close()
