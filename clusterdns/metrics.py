"""Prometheus metrics of one kctl-dns instance (own registry, so two
in-process servers in tests do not collide), shaped after CoreDNS's
coredns_dns_requests_total / responses_total / request_duration_seconds.

The query path looks label children up in plain dicts (`query(...)`), not
through `.labels()` each time: a query costs a few microseconds of metrics.
"""
from __future__ import annotations

import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# CoreDNS's request duration buckets (plugin/metrics/vars), in seconds.
BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
           0.512, 1.024, 2.048, 4.096, 8.192)
TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "ANY", "AXFR", "IXFR",
         "HTTPS", "SVCB")
_TYPE_OF = {dns.rdatatype.from_text(t): t for t in TYPES}


def type_label(qtype: int | None) -> str:
    return _TYPE_OF.get(qtype, "other")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.queries = Counter("kctl_dns_queries", "DNS queries answered, by transport, query type and rcode",
                               ["proto", "type", "rcode"], registry=self.registry)
        self.duration = Histogram("kctl_dns_query_duration_seconds",
                                  "From a query's arrival to its answer being handed to the transport",
                                  ["proto"], buckets=BUCKETS, registry=self.registry)
        self.truncated = Counter("kctl_dns_truncated_responses", "UDP answers sent with the TC bit",
                                 registry=self.registry)
        self.cache_hits = Counter("kctl_dns_cache_hits", "Answers served from the answer cache",
                                  registry=self.registry)
        self.forwards = Counter("kctl_dns_forward_requests", "Queries sent to upstreams, by upstream and result",
                                ["upstream", "result"], registry=self.registry)
        self.tcp_refused = Counter("kctl_dns_tcp_refused_connections",
                                   "TCP connections closed at once because --max-tcp-connections were open",
                                   registry=self.registry)
        self.records = Gauge("kctl_dns_index_objects", "Objects in the name index, by kind",
                             ["kind"], registry=self.registry)
        self._queries: dict[tuple, object] = {}
        self._durations: dict[str, object] = {}

    def query(self, proto: str, qtype: int | None, rcode: int, seconds: float) -> None:
        key = (proto, qtype, rcode)
        child = self._queries.get(key)
        if child is None:
            child = self._queries[key] = self.queries.labels(proto, type_label(qtype), dns.rcode.to_text(rcode))
        child.inc()
        hist = self._durations.get(proto)
        if hist is None:
            hist = self._durations[proto] = self.duration.labels(proto)
        hist.observe(seconds)

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def watch_index(self, index) -> None:
        """Export the index's object counts, read at scrape time."""
        for kind in index.counts():
            self.records.labels(kind).set_function(lambda k=kind: index.counts()[k])
