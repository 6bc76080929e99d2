"""Zero-downtime pod deletion: a pod's containers get SIGTERM only once no proxy sends it new connections.

Kubernetes sends SIGTERM as soon as a pod is deleted, while kube-proxies on
other nodes may still route new connections to it for a second or two: a
rolling update loses requests unless users add a preStop sleep.  We own both
the proxy and the agent, so the deleting agent waits for the proxies instead.

The protocol:

1. The EndpointSlice controller marks a deleted pod ``ready: false,
   terminating: true`` (controllers/endpointslice.py) in an update with
   resourceVersion R.  Proxies stop choosing it for new connections as soon
   as they apply that slice (only serving terminating endpoints are used, and
   only when a port has no ready one: nodeagent/proxymodel.py).
2. Every node agent with a proxy publishes, on its node Lease
   (``kube-node-lease/<node>``), the annotation ``kctl.io/proxy-applied-rv``:
   the EndpointSlice resourceVersion its tables reflect
   (``Proxier.applied_rv``; resourceVersions are etcd revisions, one
   counter for all kinds, so "≥ R" means "has seen that update").  Why the
   Lease and not the Node status: the agent writes its Lease every heartbeat
   anyway, a Lease is a tiny object that only the node lifecycle controller
   watches, while every Node write wakes every Node watcher (the scheduler,
   each agent's route loop).  The agent writes it with the next heartbeat,
   and at once after a sync that advanced it.
3. The deleting agent (``DrainBarrier.wait_pod_drained``, called by the
   termination step before preStop/SIGTERM) first waits until its own slice
   cache shows the pod not ready in every slice listing it, taking R as the
   newest of those slices' resourceVersions (a pod in no slice is served by
   no proxy: no wait), then until every Ready node whose Lease carries the
   annotation reports ≥ R, and finally until the connections the pod had
   accepted are finished (its network namespace's ``/proc/PID/net/tcp``
   shows no ESTABLISHED, SYN_RECV or CLOSE_WAIT socket on a listening port):
   requests in flight, and connections still queued in the server's listen
   backlog, complete before the server gets SIGTERM (its PID 1 exiting
   would reset every one of them).

Bounded, in two budgets taken out of the pod's grace period (the caller
passes what it can spare, ``budget``: the grace period minus a margin for
SIGTERM itself):

* the proxies (steps 1-2): ``timeout`` (10 s by default), so a dead or
  partitioned node, or one whose agent has no proxy, never blocks a
  deletion beyond that;
* the open connections (step 3): ``connection_timeout`` (10 s by default),
  counted from the end of steps 1-2 (whether they finished or gave up: the
  pod may still have connections either way), so a slow node or an
  overloaded server that is still working through its queue does not eat
  the time its in-flight requests need.  A client holding a connection open
  (keep-alive, a stream) delays SIGTERM by at most that much.

Both are cut to ``budget``: a pod with a 30 s grace period (budget 28 s)
waits at most 10 s + 10 s; one with a 4 s grace period at most 2 s in all.
Whenever a bound is reached the agent logs a warning ("...; stopping it
anyway") and sends SIGTERM all the same.  A UDP endpoint that left the rules
has its conntrack entries deleted by the proxy (UDP has no connection to
drain).

Lease reads are shared: concurrent waiters (a rollout deletes several pods of
one node at once) use one ``list`` of ``kube-node-lease`` per ``interval``.
"""
from __future__ import annotations

import asyncio
import logging
import time

from machinery import errors
from machinery.pb import apps_pb2

log = logging.getLogger("kctl.nodeagent.drain")

APPLIED_RV_ANNOTATION = "kctl.io/proxy-applied-rv"
LEASE_NAMESPACE = "kube-node-lease"


def _ready(node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def pod_not_ready_rv(pod, slices) -> int | None:
    """None while a slice still lists POD as ready; else the newest resourceVersion of the slices
    listing it (0 when none does)."""
    uid, ip = pod.metadata.uid, pod.status.pod_ip
    rv = 0
    for es in slices:
        for e in es.endpoints:
            if (e.target_ref.uid == uid) if e.target_ref.uid else (ip and ip in e.addresses):
                if not e.conditions.HasField("ready") or e.conditions.ready:
                    return None
                rv = max(rv, int(es.metadata.resource_version or 0))
    return rv


def lagging_nodes(nodes, leases, target: int) -> list[str]:
    """Ready nodes whose Lease reports an applied resourceVersion below TARGET."""
    applied = {}
    for lease in leases:
        text = lease.metadata.annotations.get(APPLIED_RV_ANNOTATION)
        if text and text.isdigit():
            applied[lease.metadata.name] = int(text)
    return sorted(n.metadata.name for n in nodes
                  if _ready(n) and n.metadata.name in applied and applied[n.metadata.name] < target)


_LISTEN, _OPEN_STATES = "0A", ("01", "03", "08")     # ESTABLISHED, SYN_RECV, CLOSE_WAIT


def inbound_connections(proc_net_tcp: str) -> int:
    """Open connections to a listening port in the text of /proc/PID/net/tcp: accepted (or being
    accepted) connections the server has not finished with."""
    rows = [line.split() for line in proc_net_tcp.splitlines()[1:] if line.strip()]
    listening = {r[1].rsplit(":", 1)[1] for r in rows if r[3] == _LISTEN}
    return sum(1 for r in rows if r[3] in _OPEN_STATES and r[1].rsplit(":", 1)[1] in listening)


def _read_inbound(pid: int) -> int:
    total = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                total += inbound_connections(f.read())
        except OSError:
            return 0                   # the process is gone: nothing left to drain
    return total


class DrainBarrier:
    """Waits, for a pod being deleted, until every Ready node's proxy has applied its removal."""

    def __init__(self, client, node_informer, slice_informer, *, timeout: float = 10.0,
                 connection_timeout: float = 10.0, interval: float = 0.2, clock=time.monotonic,
                 read_inbound=_read_inbound):
        self.client, self.nodes, self.slices = client, node_informer, slice_informer
        self.timeout, self.connection_timeout, self.interval = timeout, connection_timeout, interval
        self._clock, self._read_inbound = clock, read_inbound
        self._leases: list = []
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fresh_leases(self) -> list:
        async with self._lock:           # one list per interval, shared by every waiter
            if self._read_at is None or self._clock() - self._read_at >= self.interval:
                self._leases, _ = await self.client.list(apps_pb2.Lease, LEASE_NAMESPACE)
                self._read_at = self._clock()
            return self._leases

    async def wait_connections_closed(self, pid: int, deadline: float) -> int:
        """Until the network namespace of PID has no open inbound connection (read from
        /proc/PID/net/tcp*) or DEADLINE; returns how many were left."""
        while (n := self._read_inbound(pid)) and self._clock() < deadline:
            await asyncio.sleep(0.05)
        return n

    async def wait_pod_drained(self, pod, budget: float, netns_pid: int = 0) -> str:
        """"drained", "not-served" (in no slice) or "timeout"; never raises for API errors.
        With NETNS_PID (a process in the pod's network namespace), also waits for the pod's open
        inbound connections to finish, with a budget of their own (see the module docstring)."""
        start = self._clock()
        end = start + max(0.0, budget)
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        result = await self._wait_proxies(pod, key, start, min(start + self.timeout, end))
        if result == "not-served" or not netns_pid:
            return result
        proxies = self._clock()
        left = await self.wait_connections_closed(netns_pid, min(proxies + self.connection_timeout, end))
        if left:
            log.warning("pod %s: %d connections still open %.1fs after its proxies step; stopping it anyway",
                        key, left, self._clock() - proxies)
            return "timeout"
        log.info("pod %s: connections drained %.2fs after its proxies step (%s)", key, self._clock() - proxies,
                 result)
        return result

    async def _wait_proxies(self, pod, key: str, start: float, deadline: float) -> str:
        """Steps 1 and 2 of the module docstring until DEADLINE."""
        while (rv := pod_not_ready_rv(pod, self.slices.list(pod.metadata.namespace))) is None:
            if self._clock() >= deadline:
                log.warning("pod %s: still ready in its EndpointSlices after %.1fs; stopping it anyway",
                            key, deadline - start)
                return "timeout"
            await asyncio.sleep(0.05)
        if rv == 0:
            return "not-served"
        while True:
            try:
                lagging = lagging_nodes(self.nodes.list(), await self._fresh_leases(), rv)
            except errors.ApiError as exc:
                lagging = [f"? ({exc})"]
            if not lagging:
                log.info("pod %s: every proxy applied slices rv %d after %.2fs", key, rv, self._clock() - start)
                return "drained"
            if self._clock() >= deadline:
                log.warning("pod %s: proxies of %s did not apply rv %d within %.1fs; stopping it anyway",
                            key, ", ".join(lagging), rv, deadline - start)
                return "timeout"
            await asyncio.sleep(self.interval)
