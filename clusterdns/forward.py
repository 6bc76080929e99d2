"""Forwarding names outside the cluster zone to the operator's upstreams.

Only upstreams given with `--upstream IP[:PORT]` are ever asked; with none
(the default, the lab and the tests) kctl-dns has no Upstreams object at all
and answers such names REFUSED at once, so no packet can leave.

`forward(query, tcp)` relays the client's own query (its ID, flags and EDNS
options) to each upstream in the order given until one answers — over the
client's transport, as CoreDNS's forward plugin does — each try bounded by
`timeout`; all failing gives None (the server answers SERVFAIL). At most
`max_concurrent` queries are in flight (CoreDNS's max_concurrent); beyond
that None at once with `limited=True` (answered REFUSED, as CoreDNS does).
`lookup(name, qtype)` asks for the records behind an ExternalName's CNAME
(UDP, then TCP if the answer was truncated).
"""
from __future__ import annotations

import logging

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message

from machinery.errors import ControlFlow

log = logging.getLogger("kctl.dns.forward")


class LimitExceeded(ControlFlow):
    """Too many forwarded queries in flight (internal signal, answered REFUSED)."""


class Upstreams:
    def __init__(self, servers: list[tuple[str, int]], *, timeout: float = 2.0,
                 max_concurrent: int = 1000, metrics=None):
        if not servers:
            raise ValueError("Upstreams needs at least one server")
        self.servers = list(servers)
        self.timeout, self.max_concurrent = timeout, max_concurrent
        self.metrics = metrics
        self.inflight = 0

    async def forward(self, query: dns.message.Message, tcp: bool) -> dns.message.Message | None:
        if self.inflight >= self.max_concurrent:
            raise LimitExceeded()
        self.inflight += 1
        try:
            for host, port in self.servers:
                try:
                    if tcp:
                        resp = await dns.asyncquery.tcp(query, host, timeout=self.timeout, port=port)
                    else:
                        resp = await dns.asyncquery.udp(query, host, timeout=self.timeout, port=port,
                                                        ignore_unexpected=True)
                except (dns.exception.DNSException, OSError, EOFError) as exc:
                    log.debug("upstream %s:%d: %s: %s", host, port, type(exc).__name__, exc)
                    self._count(host, port, "timeout" if isinstance(exc, dns.exception.Timeout) else "error")
                    continue
                self._count(host, port, "ok")
                return resp
            return None
        finally:
            self.inflight -= 1

    async def lookup(self, name, qtype: int) -> list:
        """Answer RRsets for (name, qtype) from the upstreams; [] when none answers."""
        query = dns.message.make_query(name, qtype)
        try:
            resp = await self.forward(query, tcp=False)
            if resp is not None and resp.flags & dns.flags.TC:
                resp = await self.forward(query, tcp=True)
        except LimitExceeded:
            return []
        return list(resp.answer) if resp is not None else []

    def _count(self, host: str, port: int, result: str) -> None:
        if self.metrics is not None:
            self.metrics.forwards.labels(f"{host}:{port}", result).inc()
