"""The scheduler: informers → queue → one decision at a time → batched binds.

Tasks (all on one event loop, started by `run()` in a TaskGroup):

* informers (machinery/informer.py) for all pods, nodes and namespaces
  (namespace labels, for namespaceSelectors of pod affinity terms), and
  PodDisruptionBudgets when that kind is served (preemption). Their
  handlers only update the NodeCache and the SchedulingQueue — synchronous,
  no awaits, so neither is ever seen half-updated.
* preemption: a pod no node fits runs the PostFilter plugins
  (DefaultPreemption, through eviction.Evictor): victims are deleted
  gracefully, the pod holds a reservation on the nominated node and gets
  status.nominatedNodeName with its PodScheduled=False condition; each new
  attempt first releases its reservation.
  Informers for claims, volumes and storage classes feed the VolumeBinding
  plugin (plugins/volumebinding.py); any change of them moves unschedulable
  pods back to the active queue.
* the scheduling loop: pops a pod, decides synchronously against the cache
  (the Algorithm of the pod's profile), assumes it on the chosen node
  *before* yielding, and runs the profile's Bind plugins with the decision's
  CycleState (DefaultBinder submits to the Binder). It yields to the loop
  every few pods so watches, binds and writes make progress.
* the binder (binder.py): BindBatch of up to 128, a few in flight; per-item
  results come back through `_on_bound`: success → `Scheduled` event and
  metrics; failure → forget the assumption, then drop (pod gone / already
  bound) or requeue with backoff.
* unschedulable writers: PodScheduled=False/Unschedulable with the
  aggregated message (UpdateStatus), the decision annotation (Update) and a
  FailedScheduling event; bounded concurrency, skipped when nothing changed.
* the event sink (events.py) and a housekeeping loop (unschedulable flush,
  queue gauges).

Profiles (config.py): one Algorithm per profile, all sharing the cache,
queue and binder; a pod is decided by the profile named by its
spec.schedulerName. Pods are ours when they have no spec.nodeName, are not
being deleted, and their schedulerName is a profile's name; an unset
schedulerName and "kctl-scheduler" count as "default-scheduler" (unless a
profile has that exact name).
"""
from __future__ import annotations

import asyncio
import logging
import time

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import codec, errors, kinds
from machinery.informer import Informer
from scheduler import decision
from scheduler.algorithm import Algorithm, ScheduleResult
from scheduler.binder import BindItem, Binder
from scheduler.cache import NodeCache
from scheduler.events import EventSink, make_recorder
from scheduler.eviction import Evictor
from scheduler.config import Config
from scheduler.framework import DEFAULT_SCHEDULER, needs_scheduling, pod_info
from scheduler.metrics import Metrics
from scheduler.plugins.volumebinding import StorageListers
from scheduler.queue import QueuedPod, SchedulingQueue

log = logging.getLogger("kctl.scheduler")
YIELD_EVERY = 8


class Scheduler:
    def __init__(self, client, config: Config | None = None, *, metrics: Metrics | None = None,
                 recorder=None, clock=time.monotonic, status_writers: int = 8, registry=None):
        self.client = client
        self.config = config or Config()
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.cache = NodeCache(capacity=1024)
        self.queue = SchedulingQueue(clock=clock)
        self.binder = Binder(client, self._on_bound, batch_size=self.config.batch_size,
                             max_inflight=self.config.binds_in_flight,
                             on_batch=self._on_batch)
        self.events = EventSink(recorder or make_recorder(client),
                                on_drop=self.metrics.events_dropped.inc)
        self.evictor = Evictor(client, self.cache, self.events)
        # PodDisruptionBudgets weigh in preemption's choice when the kind is served
        self.pdbs = Informer(client, "PodDisruptionBudget") if "PodDisruptionBudget" in kinds.BY_KIND else None
        pdbs = self.pdbs.list if self.pdbs is not None else None
        self.claims, self.volumes = Informer(client, "PersistentVolumeClaim"), Informer(client, "PersistentVolume")
        self.classes = Informer(client, "StorageClass")
        storage = StorageListers(client, self.claims, self.volumes, self.classes)
        self.profiles = {p.scheduler_name: Algorithm(
            self.cache, p, percentage_of_nodes_to_score=self.config.percentage_of_nodes_to_score,
            registry=registry, binder=self.binder, evictor=self.evictor, pdbs=pdbs, storage=storage)
            for p in self.config.profiles}
        for alias in ("", "kctl-scheduler"):
            if alias not in self.profiles and DEFAULT_SCHEDULER in self.profiles:
                self.profiles[alias] = self.profiles[DEFAULT_SCHEDULER]
        self.names = frozenset(self.profiles)
        self.pods = Informer(client, "Pod")
        self.nodes = Informer(client, "Node")
        self.namespaces = Informer(client, "Namespace")
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)
        self.namespaces.add_handler(self._namespace_set, lambda old, ns: self._namespace_set(ns),
                                    lambda ns: self.cache.namespace_labels.pop(ns.metadata.name, None))
        for inf, event in ((self.claims, "PvcChange"), (self.volumes, "PvChange"), (self.classes, "StorageClassAdd")):
            inf.add_handler(lambda o, e=event: self.queue.move_all(e), lambda o, n, e=event: self.queue.move_all(e),
                            None)
        self._status_slots = asyncio.Semaphore(status_writers)
        self._writes: set[asyncio.Task] = set()          # unschedulable bookkeeping in flight
        self._attempts = {r: self.metrics.attempts.labels(r) for r in ("scheduled", "unschedulable", "error")}
        self.scheduled = 0

    # ------------------------------------------------------------ run

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.nodes.run(), name="node-informer")
                tg.create_task(self.pods.run(), name="pod-informer")
                tg.create_task(self.namespaces.run(), name="namespace-informer")
                if self.pdbs is not None:
                    tg.create_task(self.pdbs.run(), name="pdb-informer")
                for inf in (self.claims, self.volumes, self.classes):
                    tg.create_task(inf.run(), name=f"{inf.kind.kind}-informer")
                for inf in (self.nodes, self.pods, self.namespaces, self.claims, self.volumes, self.classes):
                    await inf.wait_synced()
                log.info("caches synced: %d nodes, %d pods", len(self.cache), len(self.pods))
                tg.create_task(self.binder.run(), name="binder")
                tg.create_task(self.events.run(), name="events")
                tg.create_task(self._housekeeping(), name="housekeeping")
                tg.create_task(self._schedule_loop(), name="schedule-loop")
        finally:
            self.evictor.cancel()
            for t in list(self._writes):
                t.cancel()

    async def _housekeeping(self) -> None:
        while True:
            self.queue.flush_unschedulable()
            self.metrics.set_pending(self.queue.lengths())
            await asyncio.sleep(1.0)

    # ------------------------------------------------------- handlers

    def _node_added(self, node) -> None:
        self.cache.set_node(node)
        self.queue.move_all("NodeAdd")

    def _node_updated(self, old, node) -> None:
        gen = self.cache.generation
        self.cache.set_node(node)
        if gen != self.cache.generation or old.status.allocatable != node.status.allocatable:
            self.queue.move_all("NodeUpdate")

    def _namespace_set(self, ns) -> None:
        self.cache.namespace_labels[ns.metadata.name] = dict(ns.metadata.labels)

    def _node_deleted(self, node) -> None:
        self.cache.remove_node(node.metadata.name)

    def _pod_added(self, pod) -> None:
        if pod.spec.node_name:
            self.cache.add_pod(pod)
        elif self._pending(pod) and not self.cache.is_assumed(pod.metadata.uid):
            self.queue.add(self._info(pod))

    def _pod_updated(self, old, pod) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if pod.spec.node_name:
            self.queue.delete(key)
            terminal = pod.status.phase in ("Succeeded", "Failed")
            self.cache.add_pod(pod)
            if terminal and old.status.phase != pod.status.phase:
                self.queue.move_all("PodTerminated")
            return
        if not self._pending(pod):
            self.queue.delete(key)
            return
        if self.cache.is_assumed(pod.metadata.uid):
            return
        info = self._info(pod)
        if old.spec != pod.spec or old.metadata.labels != pod.metadata.labels:
            self.queue.update(info)
        elif key in self.queue:
            self.queue.refresh(info)
        else:
            self.queue.add(info)

    def _pod_deleted(self, pod) -> None:
        self.queue.delete(f"{pod.metadata.namespace}/{pod.metadata.name}")
        self.evictor.forget(pod.metadata.uid)
        if pod.metadata.uid in self.cache.pods:
            self.cache.remove_pod(pod.metadata.uid)
            self.queue.move_all("PodDelete")

    def _pending(self, pod) -> bool:
        return needs_scheduling(pod, self.names)

    def _info(self, pod):
        info = pod_info(pod)
        info.first_seen = self.clock()
        return info

    # ------------------------------------------------- scheduling loop

    async def _schedule_loop(self) -> None:
        n = 0
        while True:
            qp = await self.queue.pop()
            self.schedule_one(qp)
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def schedule_one(self, qp: QueuedPod) -> None:
        info = qp.info
        current = self.pods.get_by_key(info.key)
        if (current is None or current.metadata.uid != info.uid or not self._pending(current)
                or self.cache.is_assumed(info.uid)):
            self.queue.done(info.key)
            return
        algo = self.profiles[current.spec.scheduler_name]
        self.cache.release_nomination(info.uid)       # its own reservation must not stand in its way
        try:
            result = algo.schedule(info)
            if result.node is None:
                pf = algo.post_filter(result, info)
                result.preemption = pf.record() if pf is not None else None
        except Exception:
            log.exception("scheduling %s failed", info.key)
            return self._attempt_failed(qp)
        if result.error is not None:
            log.error("scheduling %s failed: %s: %s", info.key, result.error.plugin, result.error.message())
            return self._attempt_failed(qp)
        if result.node is None:
            self._attempts["unschedulable"].inc()
            self.queue.add_unschedulable(qp)
            t = asyncio.create_task(self._record_unschedulable(info.key, info.uid, result, algo.weights))
            self._writes.add(t)
            t.add_done_callback(self._writes.discard)
            t.add_done_callback(_log_failure)
            return
        self.cache.assume(info, result.node)
        self.evictor.forget(info.uid)
        self.queue.done(info.key)
        ann = {decision.ANNOTATION: decision.encode(result, algo.weights)}
        st = algo.bind(result, info, ann, qp)
        if not st.ok:
            self._on_bound(BindItem(info.namespace, info.name, info.uid, result.node, ann, qp),
                           errors.ApiError(f"{st.plugin or 'bind'}: {st.message()}"))

    def _attempt_failed(self, qp: QueuedPod) -> None:
        self._attempts["error"].inc()
        self.queue.add_backoff(qp)

    # ------------------------------------------------------ bind results

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.bind_batch.observe(size)
        self.metrics.bind_duration.observe(seconds)

    def _on_bound(self, item: BindItem, err: errors.ApiError | None) -> None:
        qp: QueuedPod = item.ctx
        if err is None:
            self.scheduled += 1
            self._attempts["scheduled"].inc()
            self.metrics.e2e.observe(max(0.0, self.clock() - qp.added))
            self.events.emit(qp.info.pod, "Normal", "Scheduled",
                             f"Successfully assigned {item.namespace}/{item.name} to {item.node}")
            return
        self.cache.forget(item.uid)
        self.queue.move_all("AssumedPodForgotten")
        current = self.pods.get_by_key(qp.key)
        still_pending = (current is not None and current.metadata.uid == item.uid
                         and self._pending(current))
        if isinstance(err, errors.NotFound) or (isinstance(err, errors.Conflict) and not still_pending):
            log.info("binding %s to %s dropped: %s", qp.key, item.node, err)
            return
        log.warning("binding %s to %s failed: %s; retrying after backoff", qp.key, item.node, err)
        self._attempts["error"].inc()
        if still_pending:
            qp.info = self._info(current) if current is not qp.info.pod else qp.info
            self.queue.add_backoff(qp)

    # ------------------------------------------- unschedulable bookkeeping

    async def _record_unschedulable(self, key: str, uid: str, result: ScheduleResult,
                                    weights: dict[str, float]) -> None:
        message = result.message()
        dec = decision.record(result, weights)
        nominated = (result.preemption or {}).get("nominated")
        async with self._status_slots:
            pod = self.pods.get_by_key(key)
            if pod is None or pod.metadata.uid != uid or not self._pending(pod):
                return
            self.events.emit(pod, "Warning", "FailedScheduling", message)
            for attempt in range(3):
                try:
                    await self._write_unschedulable(pod, message, dec, nominated)
                    return
                except errors.Conflict:
                    pod = await self.client.get("Pod", pod.metadata.name, pod.metadata.namespace)
                    if pod.metadata.uid != uid or not self._pending(pod):
                        return
                except errors.NotFound:
                    return

    async def _write_unschedulable(self, pod, message: str, dec: dict, nominated: str | None = None) -> None:
        old = pod.metadata.annotations.get(decision.ANNOTATION)
        if old is None or _without_time(decision.decode(old)) != _without_time(dec):
            new = codec.copy(pod)
            new.metadata.annotations[decision.ANNOTATION] = decision.json_of(dec)
            pod = await self.client.update(new)
        cond = next((c for c in pod.status.conditions if c.type == "PodScheduled"), None)
        if cond is not None and cond.status == "False" and cond.reason == "Unschedulable" \
                and cond.message == message and (nominated is None or pod.status.nominated_node_name == nominated):
            return
        new = codec.copy(pod)
        now = Timestamp()
        now.GetCurrentTime()
        c = next((c for c in new.status.conditions if c.type == "PodScheduled"), None)
        if c is None:
            c = new.status.conditions.add(type="PodScheduled")
        if c.status != "False":
            c.last_transition_time.CopyFrom(now)
        c.status, c.reason, c.message = "False", "Unschedulable", message
        c.last_probe_time.CopyFrom(now)
        if new.status.phase == "":
            new.status.phase = "Pending"
        if nominated is not None:
            new.status.nominated_node_name = nominated
        await self.client.update_status(new)


def _without_time(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "time"}


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("recording an unschedulable pod failed", exc_info=task.exception())
