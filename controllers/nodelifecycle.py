"""The node lifecycle controller (Kubernetes' pkg/controller/nodelifecycle
and its NoExecute taint manager), reduced to one periodic monitor task.

Health: a node is healthy while its Lease in kube-node-lease (or its Ready
condition's heartbeat) keeps changing. Like Kubernetes we time this on OUR
clock from the moment WE saw the last change ("probe timestamp"), so clock
skew between agents and us does not matter, and a freshly started controller
gives every node a full grace period before judging it.

Every `monitor_period` (0.5 s) the monitor — and at the moment a node's
grace period or a pod's eviction delay runs out, when that comes sooner
(`wake_in`): the deadlines are kept, not rounded up to the next period,
which cost a failover ~0.25 s on average for NotReady and up to a period
for the eviction (Kubernetes' taint manager also evicts at the exact time,
from timers):
1. sets Ready (and the other conditions) to Unknown, reason NodeStatusUnknown,
   on nodes silent for longer than `grace` (--node-monitor-grace-period), and
   marks their pods Ready=False at once (UpdateStatus per pod) so endpoints
   drop them; a node that speaks again (a heartbeat that really changed, not
   merely our own restart) and still carries OUR Unknown gets Ready=True back
   (an agent may only renew its lease and post node status every 10 s);
2. keeps the taints in step with Ready: Unknown → node.kubernetes.io/unreachable,
   False → node.kubernetes.io/not-ready (NoExecute and NoSchedule), True → none;
3. evicts pods from nodes with NoExecute taints: a pod that does not tolerate
   a taint is deleted `eviction_timeout` (--pod-eviction-timeout) after the
   taint was added; one that tolerates all of them with tolerationSeconds
   after the smallest of those; one that tolerates them forever stays.
   The delete is an ordinary graceful one: the pod shows Terminating until its
   node comes back (its agent stops it and confirms) — the ReplicaSet no longer
   counts a pod with a deletionTimestamp, so its replacement is created at once;
4. pods bound to a node that was deleted are force-deleted (pod GC);
5. disruption mode: when at least 2 nodes and more than half of all nodes (or
   every node) are unhealthy, the controller assumes that it, not the nodes,
   is cut off and evicts nothing (Kubernetes' full/partial disruption with
   the small-cluster eviction rate of 0); entering and leaving it is logged
   and recorded as events on the nodes. On leaving, eviction timers restart.

Concurrency: only the monitor task writes; handlers only record probe times
(synchronous dict writes). Per-tick writes for different nodes run
concurrently with asyncio.gather; a write that fails (Conflict, ...) is
logged and simply redone on the next tick from the fresh cache.
"""
from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Gauge, Histogram

from machinery import codec, errors
from machinery.informer import BY_NODE, index_by_node

from controllers import podutil

log = logging.getLogger("kctl.controllers.nodelifecycle")

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
LEASE_NAMESPACE = "kube-node-lease"
_OURS = (UNREACHABLE, NOT_READY)
DEADLINE_SLACK = 0.01       # wake this long after a grace period ends (silence must EXCEED grace)
MIN_WAIT = 0.01             # never loop faster than this

MONITOR_DURATION = Histogram("kctl_nodelifecycle_monitor_duration_seconds", "Seconds per node monitor pass",
                             buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))
UNHEALTHY = Gauge("kctl_nodelifecycle_unhealthy_nodes", "Nodes silent or not Ready at the last pass")
DISRUPTED = Gauge("kctl_nodelifecycle_disruption_mode", "1 while evictions are stopped (disruption mode)")
EVICTIONS = Counter("kctl_nodelifecycle_evictions_total", "Pods deleted from NoExecute-tainted nodes")


def tolerates(tol, taint) -> bool:
    """ToleratesTaint: effect, key (empty key + Exists tolerates all), value."""
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.key and tol.key != taint.key:
        return False
    op = tol.operator or "Equal"
    if op == "Exists":
        return True
    return tol.key != "" and tol.value == taint.value


def eviction_delay(pod, taints, default: float) -> float | None:
    """Seconds after the taints appeared at which the pod goes; None = never."""
    delays = []
    for taint in taints:
        matching = [t for t in pod.spec.tolerations if tolerates(t, taint)]
        if not matching:
            return default
        secs = [t.toleration_seconds for t in matching if t.HasField("toleration_seconds")]
        if len(secs) == len(matching):
            delays.append(max(0, min(secs)))
    return min(delays) if delays else None


class NodeLifecycleController:
    name = "nodelifecycle"

    def __init__(self, client, factory, recorder=None, *, grace: float = 4.0, eviction_timeout: float = 2.0,
                 monitor_period: float = 0.5, clock=time.time, monotonic=time.monotonic):
        self.client, self.recorder = client, recorder
        self.grace, self.eviction_timeout, self.period = grace, eviction_timeout, monitor_period
        self.clock, self.monotonic = clock, monotonic
        self.node_inf = factory.informer("Node")
        self.lease_inf = factory.informer("Lease", LEASE_NAMESPACE)
        self.pod_inf = factory.informer("Pod")
        if BY_NODE not in self.pod_inf._indexers:
            self.pod_inf.add_index(BY_NODE, index_by_node)
        # "lease:<node>" / "node:<node>" -> (what we saw, when it last changed, changed since first sight)
        self._probe: dict[str, tuple[tuple, float, bool]] = {}
        self.disrupted = False
        self._resumed_at = 0.0                               # wall time when disruption mode ended
        self.lease_inf.add_handler(self._lease_seen, lambda o, n: self._lease_seen(n), None)
        self.node_inf.add_handler(self._node_seen, lambda o, n: self._node_seen(n), self._node_gone)

    def informers(self):
        return [self.node_inf, self.lease_inf, self.pod_inf]

    # --------------------------------------------------------- probes
    def _saw(self, node: str, what: tuple) -> None:
        prev = self._probe.get(node)
        if prev is None:
            self._probe[node] = (what, self.monotonic(), False)      # first sight starts the grace period
        elif prev[0] != what:
            self._probe[node] = (what, self.monotonic(), True)       # a heartbeat we really heard

    def _lease_seen(self, lease) -> None:
        rt = lease.spec.renew_time
        self._saw("lease:" + lease.metadata.name, (rt.seconds, rt.nanos))

    def _node_seen(self, node) -> None:
        c = podutil.condition(node, "Ready")
        hb = (c.last_heartbeat_time.seconds, c.last_heartbeat_time.nanos) if c is not None else (0, 0)
        self._saw("node:" + node.metadata.name, hb)

    def _node_gone(self, node) -> None:
        self._probe.pop("node:" + node.metadata.name, None)

    def _last_heard(self, name: str) -> float | None:
        times = [p[1] for k in ("lease:" + name, "node:" + name) if (p := self._probe.get(k)) is not None]
        return max(times) if times else None

    def silent_for(self, name: str) -> float:
        now = self.monotonic()
        last = self._last_heard(name)
        if last is None:
            self._probe["node:" + name] = ((), now, False)
            return 0.0
        return now - last

    def heard_from(self, name: str) -> bool:
        """A heartbeat really changed within the grace period (not just: we started)."""
        now = self.monotonic()
        return any(p[2] and now - p[1] <= self.grace
                   for k in ("lease:" + name, "node:" + name) if (p := self._probe.get(k)) is not None)

    # --------------------------------------------------------- loop
    async def run(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self.informers()))
        log.info("caches synced; monitoring node health every %.1fs (grace %.1fs, eviction %.1fs)",
                 self.period, self.grace, self.eviction_timeout)
        while True:
            try:
                with MONITOR_DURATION.time():
                    await self.monitor_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node monitor pass failed")
            await asyncio.sleep(self.wake_in())

    def wake_in(self) -> float:
        """Seconds until the next pass: the period, or just after the first
        deadline that runs out before it — a node's grace period (silent for
        MORE than grace) or a pod's eviction time on a tainted node. Deadlines
        already past were acted on by the pass just done (or are retried a
        period later, as before)."""
        now, wall = self.monotonic(), self.clock()
        soonest = self.period
        for node in self.node_inf.list():
            last = self._last_heard(node.metadata.name)
            if last is not None and now - last <= self.grace:      # not silent yet: when it would be
                soonest = min(soonest, last + self.grace - now + DEADLINE_SLACK)
            if not self.disrupted:
                for _, due in self._eviction_times(node):
                    if due > wall:
                        soonest = min(soonest, due - wall)
        return max(MIN_WAIT, soonest)

    async def monitor_once(self) -> None:
        nodes = self.node_inf.list()
        silent = {n.metadata.name: self.silent_for(n.metadata.name) > self.grace for n in nodes}
        unhealthy = sum(1 for n in nodes if silent[n.metadata.name] or self._ready(n) != "True")
        UNHEALTHY.set(unhealthy)
        self._set_disruption(nodes, unhealthy)
        DISRUPTED.set(1 if self.disrupted else 0)
        await asyncio.gather(*(self._one_node(n, silent[n.metadata.name]) for n in nodes))
        await self._collect_orphans({n.metadata.name for n in nodes})

    async def _collect_orphans(self, known: set[str]) -> None:
        """Pods bound to a node that no longer exists are force-deleted
        (Kubernetes' pod GC); the node's absence is confirmed by a live GET."""
        missing: dict[str, list] = {}
        for p in self.pod_inf.list():
            if p.spec.node_name and p.spec.node_name not in known:
                missing.setdefault(p.spec.node_name, []).append(p)
        for node_name, pods in missing.items():
            try:
                await self.client.get("Node", node_name)
                continue
            except errors.NotFound:
                pass
            for p in pods:
                try:
                    await self.client.delete("Pod", p.metadata.name, p.metadata.namespace, grace_period=0,
                                             uid=p.metadata.uid)
                    log.info("deleted pod %s/%s of deleted node %s", p.metadata.namespace, p.metadata.name,
                             node_name)
                except (errors.NotFound, errors.Conflict):
                    pass

    @staticmethod
    def _ready(node) -> str:
        c = podutil.condition(node, "Ready")
        return c.status if c is not None else "Unknown"

    def _set_disruption(self, nodes, unhealthy: int) -> None:
        total = len(nodes)
        disrupted = total > 0 and (unhealthy == total or (unhealthy >= 2 and 2 * unhealthy > total))
        if disrupted == self.disrupted:
            return
        self.disrupted = disrupted
        if disrupted:
            msg = (f"{unhealthy} of {total} nodes are not ready: entering disruption mode, "
                   "pod evictions stopped")
            log.warning("%s", msg)
            reason = "EvictionsStopped"
        else:
            msg = f"{unhealthy} of {total} nodes are not ready: leaving disruption mode, pod evictions resumed"
            log.info("%s", msg)
            self._resumed_at = self.clock()
            reason = "EvictionsResumed"
        if self.recorder is not None:
            for n in nodes:
                self.recorder.event(n, "Warning" if disrupted else "Normal", reason, msg)

    async def _one_node(self, node, silent: bool) -> None:
        try:
            node = await self._update_health(node, silent)
            node = await self._update_taints(node)
            if self._ready(node) == "Unknown":
                await self._mark_pods_not_ready(node)
            if not self.disrupted:
                await self._evict(node)
        except errors.ApiError as exc:
            log.info("node %s: %s (retrying next pass)", node.metadata.name, exc)

    async def _update_health(self, node, silent: bool):
        c = podutil.condition(node, "Ready")
        now = podutil.now_ts(self.clock)
        if silent and (c is None or c.status != "Unknown"):
            new = codec.copy(node)
            if podutil.condition(new, "Ready") is None:
                new.status.conditions.add(type="Ready", status="Unknown", reason="NodeStatusNeverUpdated",
                                          message="Kubelet never posted node status.",
                                          last_transition_time=now, last_heartbeat_time=now)
            for cond in new.status.conditions:
                if cond.status != "Unknown":
                    cond.status, cond.reason = "Unknown", "NodeStatusUnknown"
                    cond.message = "Kubelet stopped posting node status."
                    cond.last_transition_time.CopyFrom(now)
            log.warning("node %s: no heartbeat for more than %.1fs: Ready=Unknown", node.metadata.name, self.grace)
            if self.recorder is not None:
                self.recorder.event(node, "Normal", "NodeNotReady",
                                    f"Node {node.metadata.name} status is now: NodeNotReady")
            return await self.client.update_status(new)
        if (not silent and c is not None and c.status == "Unknown" and c.reason == "NodeStatusUnknown"
                and self.heard_from(node.metadata.name)):
            new = codec.copy(node)
            for cond in new.status.conditions:
                if cond.reason == "NodeStatusUnknown":
                    ready = cond.type == "Ready"
                    cond.status = "True" if ready else "False"
                    cond.reason = "KubeletReady" if ready else ""
                    cond.message = "kubelet is posting ready status" if ready else ""
                    cond.last_transition_time.CopyFrom(now)
            log.info("node %s: heartbeats again: Ready=True", node.metadata.name)
            if self.recorder is not None:
                self.recorder.event(node, "Normal", "NodeReady", f"Node {node.metadata.name} status is now: NodeReady")
            return await self.client.update_status(new)
        return node

    async def _update_taints(self, node):
        ready = self._ready(node)
        want_key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(ready)
        have = {(t.key, t.effect) for t in node.spec.taints if t.key in _OURS}
        want = {(want_key, e) for e in ("NoExecute", "NoSchedule")} if want_key else set()
        if have == want:
            return node
        new = codec.copy(node)
        keep = [codec.copy(t) for t in new.spec.taints if t.key not in _OURS or (t.key, t.effect) in want]
        del new.spec.taints[:]
        new.spec.taints.extend(keep)
        for key, effect in sorted(want - have):
            t = new.spec.taints.add(key=key, effect=effect)
            if effect == "NoExecute":
                t.time_added.FromNanoseconds(int(self.clock() * 1e9))
        log.info("node %s: taints %s", node.metadata.name,
                 ", ".join(f"{t.key}:{t.effect}" for t in new.spec.taints) or "none")
        return await self.client.update(new)

    async def _mark_pods_not_ready(self, node) -> None:
        async def one(pod):
            new = codec.copy(pod)
            c = podutil.condition(new, "Ready")
            if c is None:
                c = new.status.conditions.add(type="Ready")
            c.status, c.reason = "False", "NodeNotReady"
            c.message = f"Node {node.metadata.name} is not responding"
            c.last_transition_time.CopyFrom(podutil.now_ts(self.clock))
            try:
                await self.client.update_status(new)
            except (errors.NotFound, errors.Conflict):
                pass
        todo = [p for p in self.pod_inf.by_index(BY_NODE, node.metadata.name)
                if p.status.phase not in ("Succeeded", "Failed")
                and ((c := podutil.condition(p, "Ready")) is None or c.status != "False")]
        if todo:
            log.info("node %s: marking %d pod(s) not ready", node.metadata.name, len(todo))
            await asyncio.gather(*(one(p) for p in todo))

    def _eviction_times(self, node) -> list:
        """(pod, wall time it is to be evicted at) for the pods a NoExecute taint of node evicts."""
        taints = [t for t in node.spec.taints if t.effect == "NoExecute"]
        if not taints:
            return []
        since = max([t.time_added.seconds + t.time_added.nanos / 1e9 for t in taints] + [self._resumed_at])
        out = []
        for pod in self.pod_inf.by_index(BY_NODE, node.metadata.name):
            if podutil.is_terminating(pod):
                continue
            delay = eviction_delay(pod, taints, self.eviction_timeout)
            if delay is not None:
                out.append((pod, since + delay))
        return out

    async def _evict(self, node) -> None:
        now = self.clock()
        victims = [pod for pod, due in self._eviction_times(node) if now >= due]

        async def one(pod):
            try:
                await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid)
            except (errors.NotFound, errors.Conflict):
                return
            EVICTIONS.inc()
            log.info("evicted pod %s/%s from node %s", pod.metadata.namespace, pod.metadata.name,
                     node.metadata.name)
            if self.recorder is not None:
                self.recorder.event(pod, "Normal", "TaintManagerEviction",
                                    f"Marking for deletion Pod {pod.metadata.namespace}/{pod.metadata.name}")
        if victims:
            await asyncio.gather(*(one(p) for p in victims))
