"""Prometheus metrics of the apiserver, served over HTTP on --metrics-listen.

The metric objects are module globals (prometheus_client's default
registry); they are updated from the event loop only, and prometheus_client
serves them from its own thread, which its locking makes safe.
"""
from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("kctl_apiserver_requests", "API requests by kind, verb and result code",
                   ["kind", "verb", "code"])
REQUEST_DURATION = Histogram("kctl_apiserver_request_duration_seconds", "API request latency (watch excluded)",
                             ["kind", "verb"], buckets=_LATENCY_BUCKETS)
WATCHES = Gauge("kctl_apiserver_watches", "Open watch streams", ["kind"])
UPDATE_READS = Counter("kctl_apiserver_update_reads", "Where an update got the object it starts from: "
                       "the watch cache's newest copy, or etcd (no copy, a stale one, a retry)", ["source"])
ETCD_DURATION = Histogram("kctl_apiserver_etcd_request_duration_seconds", "etcd request latency",
                          ["operation"], buckets=_LATENCY_BUCKETS)


def serve(listen: str) -> int | None:
    """Start the /metrics HTTP endpoint on HOST:PORT ("" or "off": disabled).
    Returns the bound port; a port already in use is logged, not fatal."""
    if not listen or listen == "off":
        return None
    host, _, port = listen.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
    except OSError as exc:
        log.warning("metrics endpoint %s not started: %s", listen, exc)
        return None
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", bound)
    return bound
