"""The DNS transports: UDP and TCP on the component's event loop.

`DnsServer(resolver, upstreams=None, metrics=...)`; `await server.start(host,
port)` binds a datagram endpoint and a stream server (port 0 picks a free
one, `server.port` tells which), `await server.serve(host, port)` also waits
until cancelled, then closes both.

One query, `respond(wire, proto)`:
* parse with dnspython; unparsable with a header → FORMERR, shorter → dropped;
  responses (QR set) dropped; opcode other than QUERY → NOTIMP; not exactly
  one question → FORMERR; EDNS version > 0 → BADVERS; class other than IN →
  REFUSED;
* `Resolver.resolve` answers the cluster zone synchronously; names outside it
  go to the upstreams as a task — or, with no upstream, REFUSED at once;
* the answer is rendered for the transport: TCP up to 65535 bytes; UDP up to
  512 bytes, or the EDNS0 payload the client offers, beyond which dnspython
  drops whole RRsets and sets TC so the client retries over TCP;
* a bug while answering one query is logged and answered SERVFAIL (an
  exception escaping datagram_received would close the UDP transport);
  upstream work that fails is logged and the query dropped.
Answers that need no upstream are cached as wire bytes keyed by the query's
bytes after its ID and the transport; the cache empties whenever the index
changes (its generation), so it is never stale — it only spares parsing and
rendering identical queries (a pod's resolver asks the same few names again
and again).

Concurrency: the fast path runs inside datagram_received / the TCP reader
without awaiting; only upstream work is a task (kept in a set until done).
A TCP connection answers its queries in order and closes after `tcp_idle`
seconds without one (or when a client does not take its answer within
that time). At most `max_tcp` connections are open at once: one beyond
that is closed as soon as it is accepted (counted in
kctl_dns_tcp_refused_connections_total), so idle or hostile clients cannot
hold more than that many sockets and tasks; UDP is unaffected.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass

from clusterdns.forward import LimitExceeded
from clusterdns.metrics import Metrics
from machinery.errors import HostError

log = logging.getLogger("kctl.dns.server")

OUR_PAYLOAD = 1232          # what we advertise in EDNS0 (DNS flag day 2020)
UDP_MIN, WIRE_MAX = 512, 65535
MAX_TCP = 256               # open TCP connections at once (`--max-tcp-connections`)


class DnsServer:
    def __init__(self, resolver, *, upstreams=None, metrics: Metrics | None = None,
                 cache_size: int = 10000, tcp_idle: float = 10.0, max_tcp: int = MAX_TCP):
        self.resolver, self.upstreams = resolver, upstreams
        self.metrics = metrics or Metrics()
        self.cache_size, self.tcp_idle, self.max_tcp = cache_size, tcp_idle, max_tcp
        self._cache: dict[tuple, tuple] = {}
        self._cache_gen = None
        self._tasks: set[asyncio.Task] = set()
        self._conns: set[asyncio.StreamWriter] = set()
        self._udp = None
        self._tcp = None
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> None:
        """Bind UDP and TCP on one port. Port 0: the UDP socket picks it; if that port is
        taken for TCP (an outgoing connection may hold it), try another one."""
        loop = asyncio.get_running_loop()
        attempts = 8 if port == 0 else 1
        for attempt in range(attempts):
            try:
                self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
                self.port = self._udp.get_extra_info("sockname")[1]
                self._tcp = await asyncio.start_server(self._tcp_client, host, self.port)
                break
            except OSError as exc:
                self.close()
                if attempt == attempts - 1:
                    raise HostError(f"--listen {host}:{port}: cannot bind: {exc.strerror or exc}") from exc
        log.info("answering DNS on %s:%d (udp, tcp)", host, self.port)

    async def serve(self, host: str, port: int) -> None:
        await self.start(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._conns):
            writer.close()

    # ------------------------------------------------------------ one query

    def respond(self, wire: bytes, proto: str):
        """Answer bytes, None (drop), or an awaitable of either (upstream work)."""
        t0 = time.perf_counter()
        gen = (self.resolver.index.generation, self.resolver.index.synced)
        if gen != self._cache_gen:
            self._cache.clear()
            self._cache_gen = gen
        key = (wire[2:], proto)
        hit = self._cache.get(key)
        if hit is not None:
            body, qtype, rcode = hit
            self.metrics.cache_hits.inc()
            if body[0] & 0x02:                          # TC (flags byte 2 of the header)
                self.metrics.truncated.inc()
            self.metrics.query(proto, qtype, rcode, time.perf_counter() - t0)
            return wire[:2] + body
        try:
            query = dns.message.from_wire(wire)
        except Exception as exc:  # noqa: BLE001 - any garbage from the network is a FORMERR
            log.debug("unparsable query (%d bytes): %s", len(wire), exc)
            return self._formerr(wire, proto, t0)
        if query.flags & dns.flags.QR:
            return None
        try:
            return self._answer(query, key, proto, t0)
        except Exception:  # noqa: BLE001 - a bug answering one query must not stop the transport
            log.exception("answering %s failed", query.question[0] if query.question else "a query")
            resp = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
            resp.set_rcode(dns.rcode.SERVFAIL)
            return self._render(query, resp, proto, t0)

    def _answer(self, query, key: tuple, proto: str, t0: float):
        resp = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        qtype = query.question[0].rdtype if len(query.question) == 1 else None
        if query.opcode() != dns.opcode.QUERY:
            resp.set_rcode(dns.rcode.NOTIMP)
        elif qtype is None:
            resp.set_rcode(dns.rcode.FORMERR)
        elif query.edns > 0:
            resp.set_rcode(dns.rcode.BADVERS)
        elif query.question[0].rdclass != dns.rdataclass.IN:
            resp.set_rcode(dns.rcode.REFUSED)
        else:
            answer = self.resolver.resolve(query.question[0].name, qtype)
            if answer.outside:
                if self.upstreams is not None:
                    return self._settle(self._forward(query, proto, t0))
                resp.set_rcode(dns.rcode.REFUSED)
            else:
                resp.set_rcode(answer.rcode)
                if answer.authoritative:
                    resp.flags |= dns.flags.AA
                resp.answer = list(answer.answer)
                resp.authority = list(answer.authority)
                resp.additional = list(answer.additional)
                if answer.chase is not None and self.upstreams is not None:
                    return self._settle(self._chase(query, resp, answer.chase, proto, t0))
        out = self._render(query, resp, proto, t0)
        if len(self._cache) >= self.cache_size > 0:
            self._cache.pop(next(iter(self._cache)))
        if self.cache_size > 0:
            self._cache[key] = (out[2:], qtype, resp.rcode())
        return out

    def _render(self, query, resp, proto: str, t0: float) -> bytes:
        if proto == "tcp":
            size = WIRE_MAX
        else:
            size = min(max(query.payload if query.edns >= 0 else UDP_MIN, UDP_MIN), WIRE_MAX)
        out = resp.to_wire(max_size=size, prefer_truncation=True)
        if out[2] & 0x02:                               # TC (flags byte 2 of the header)
            self.metrics.truncated.inc()
        qtype = query.question[0].rdtype if len(query.question) == 1 else None
        self.metrics.query(proto, qtype, resp.rcode(), time.perf_counter() - t0)
        return out

    def _formerr(self, wire: bytes, proto: str, t0: float) -> bytes | None:
        if len(wire) < 12:
            return None
        msg = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
        msg.flags = dns.flags.QR | (int.from_bytes(wire[2:4], "big") & dns.flags.RD)
        msg.set_rcode(dns.rcode.FORMERR)
        self.metrics.query(proto, None, dns.rcode.FORMERR, time.perf_counter() - t0)
        return msg.to_wire()

    async def _forward(self, query, proto: str, t0: float) -> bytes:
        try:
            resp = await self.upstreams.forward(query, tcp=proto == "tcp")
        except LimitExceeded:
            resp = None
            rcode = dns.rcode.REFUSED
        else:
            rcode = dns.rcode.SERVFAIL
        if resp is None:
            resp = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
            resp.set_rcode(rcode)
        return self._render(query, resp, proto, t0)

    async def _chase(self, query, resp, chase: tuple, proto: str, t0: float) -> bytes:
        resp.answer.extend(await self.upstreams.lookup(*chase))
        return self._render(query, resp, proto, t0)

    @staticmethod
    async def _settle(pending) -> bytes | None:
        """Upstream work; a failure is logged and the query dropped (the client retries)."""
        try:
            return await pending
        except Exception:  # noqa: BLE001 - one query's failure must not end a connection or the server
            log.exception("answering a query through the upstreams failed")
            return None

    # ------------------------------------------------------------ transports

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.max_tcp:
            self.metrics.tcp_refused.inc()
            writer.transport.abort()          # no FIN handshake to wait for: the socket is gone now
            return
        self._conns.add(writer)
        try:
            while True:
                try:
                    size = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle)
                    wire = await asyncio.wait_for(reader.readexactly(int.from_bytes(size, "big")),
                                                  self.tcp_idle)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                out = self.respond(wire, "tcp")
                if inspect.isawaitable(out):
                    out = await out
                if out is not None:
                    writer.write(len(out).to_bytes(2, "big") + out)
                    try:
                        await asyncio.wait_for(writer.drain(), self.tcp_idle)
                    except TimeoutError:      # it does not read its answers
                        return
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            # The loop is shutting down under an open connection. Nobody awaits this
            # task, and Python 3.11's start_server logs a cancelled handler as an error.
            return
        finally:
            self._conns.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        out = self.server.respond(data, "udp")
        if out is None:
            return
        if isinstance(out, bytes):
            self.transport.sendto(out, addr)
            return
        self.server._spawn(self._later(out, addr))

    async def _later(self, pending, addr) -> None:
        out = await pending
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc) -> None:
        log.debug("udp: %s", exc)
