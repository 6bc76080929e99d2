"""Prometheus metrics of the node agent: every series it exports, in one place.

Registered once, at import, in the default registry (so many hollow agents in
one process share them; per-node series carry a ``node`` label): the pod
workers', the container runtime's (operation latency/errors, running
containers), the image store's (pull time) and the service proxy's (sync
time, rules, errors), and the event loop's lag.  ``serve`` exposes all of them.

Event loop lag (``watch_loop_lag``): probes, proxy syncs and drain waits all
run on the agent's one asyncio loop, and a probe's timeout is measured there,
so a loop that did not run for a second fails every probe on the node at
once.  The watcher sleeps ``interval`` again and again and records how much
later than asked it woke up; a lag of ``warn_after`` or more is logged as a
warning naming the stall, so that lost requests or Unhealthy bursts can be
matched with it (tests/e2e/test_lab_rollout_traffic.py collects warnings).
"""
from __future__ import annotations

import asyncio
import logging
import time

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("kctl.nodeagent.metrics")

POD_START_LATENCY = Histogram(
    "kctl_nodeagent_pod_start_duration_seconds",
    "Time from the agent first seeing a pod bound to it to all its containers running",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60))
RUNNING_PODS = Gauge("kctl_nodeagent_running_pods", "Pods with a worker on this node", ["node"])
RUNNING_CONTAINERS = Gauge("kctl_nodeagent_running_containers_by_node",  # refreshed with node status
                           "Running containers seen by the pod workers", ["node"])
WORKER_ERRORS = Counter("kctl_nodeagent_pod_worker_errors_total", "Failed pod worker steps", ["step"])
STATUS_WRITES = Counter("kctl_nodeagent_pod_status_updates_total", "Pod status writes", ["result"])
HEARTBEATS = Counter("kctl_nodeagent_heartbeats_total", "Lease renewals", ["result"])
PROBES = Counter("kctl_nodeagent_probe_results_total", "Probe results", ["probe", "result"])

# container runtime (nodeagent/runtime.py)
RUNTIME_OP_LATENCY = Histogram("kctl_nodeagent_runtime_operation_duration_seconds",
                               "Latency of container runtime operations", ["operation"],
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RUNTIME_OP_ERRORS = Counter("kctl_nodeagent_runtime_operation_errors_total",
                            "Failed container runtime operations", ["operation"])
RUNTIME_RUNNING = Gauge("kctl_nodeagent_runtime_running_containers",
                        "Running containers seen by the last list()")

# image store (nodeagent/images.py)
IMAGE_PULL_SECONDS = Histogram(
    "kctl_nodeagent_image_pull_duration_seconds",
    "Time to pull an image from a registry or local layout and unpack its layers.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))

# service proxy (nodeagent/proxy.py)
PROXY_SYNC_DURATION = Histogram("kctl_nodeagent_proxy_sync_duration_seconds",
                                "Duration of applied proxy syncs (render + iptables-save + iptables-restore)",
                                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PROXY_RULES = Gauge("kctl_nodeagent_proxy_rules", "iptables rules in the last applied payload", ["node", "table"])
PROXY_SYNC_ERRORS = Counter("kctl_nodeagent_proxy_sync_errors_total", "Failed proxy syncs", ["node"])
PROXY_SYNCS = Counter("kctl_nodeagent_proxy_syncs_total", "Proxy syncs by result", ["node", "result"])

LOOP_LAG = Histogram("kctl_nodeagent_event_loop_lag_seconds",
                     "How much later than asked the agent's event loop ran a timer", ["node"],
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


async def watch_loop_lag(node: str, interval: float = 0.25, warn_after: float = 0.5,
                         clock=time.monotonic) -> None:
    """Until cancelled: observe the loop's lag into LOOP_LAG; warn when it reaches WARN_AFTER."""
    series = LOOP_LAG.labels(node)
    while True:
        asked = clock()
        await asyncio.sleep(interval)
        lag = max(0.0, clock() - asked - interval)
        series.observe(lag)
        if lag >= warn_after:
            log.warning("event loop of node %s stalled %.2fs (probes, proxy syncs and drains were late)", node, lag)


async def serve(listen: str) -> None:
    """Expose /metrics on HOST:PORT until cancelled (a tiny asyncio HTTP server)."""
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            body = prometheus_client.generate_latest()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + prometheus_client.CONTENT_TYPE_LATEST.encode()
                         + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                         + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host or "0.0.0.0", int(port))
    async with server:
        await server.serve_forever()
