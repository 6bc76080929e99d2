"""The DaemonSet controller (Kubernetes' pkg/controller/daemon).

sync(key) reads the DaemonSet, every Node and the DaemonSet's pods (claimed
by selector and controllerRef, grouped by target node: spec.nodeName or,
while unscheduled, the node of their `metadata.name` affinity term), then:

1. history: the ControllerRevision whose data equals the current template
   (`{"spec":{"template":...,"$patch":"replace"}}`) is the current revision;
   none -> a new one `NAME-<hash>` with revision max+1 (a hash collision
   bumps status.collisionCount); an older one that matches again (a
   rollback) gets revision max+1. Its hash is the pods'
   `controller-revision-hash` label;
2. unless expectations are pending: manage — a pod for every node that
   should run one (nodeSelector, node affinity, taints vs. the template's
   tolerations plus the automatic daemon tolerations), no pod where it
   should not run any more (an untolerated NoExecute taint, a label change,
   a deleted node), failed pods replaced (with a per-node back-off, 1 s
   doubling up to 15 min), extra pods on a node removed. New pods are
   created without a node: the default scheduler binds them through their
   required node affinity on metadata.name;
3. RollingUpdate (when manage had nothing to do): without maxSurge, delete
   old pods while at most maxUnavailable are unavailable; with maxSurge,
   start the new pod beside an available old one and delete the old one once
   the new one is available. OnDelete: only manage replaces deleted pods;
4. old revisions beyond revisionHistoryLimit that no pod uses are deleted;
   the status (desired/current/ready/available/updated/misscheduled) is
   written, observedGeneration only after a full sync.

Pure decisions live in controllers/daemonset_util.py; the revision history
(steps 1 and 4) in controllers/history.py, shared with StatefulSets.
"""
from __future__ import annotations

import asyncio
import time

from machinery import codec, errors, selectors, workloads
from machinery.informer import key_of

from controllers import daemonset_util as du
from controllers import podcontrol, podutil
from controllers.base import Controller
from controllers.history import RevisionHistory
from controllers.expectations import Expectations
from controllers.replicaset import ensure_indexes

BURST_REPLICAS = 250
FAILED_BACKOFF, FAILED_BACKOFF_MAX = 1.0, 900.0


class DaemonSetController(RevisionHistory, Controller):
    name = "daemonset"

    def __init__(self, client, factory, recorder=None, workers: int = 2, *, clock=time.time,
                 burst_replicas: int = BURST_REPLICAS):
        super().__init__(client, factory, recorder, workers)
        self.clock, self.burst = clock, burst_replicas
        self.expectations = Expectations()
        self.failed_backoff: dict[tuple[str, str], tuple[float, float]] = {}
        self.ds_inf = factory.informer("DaemonSet")
        self.pod_inf = factory.informer("Pod")
        self.node_inf = factory.informer("Node")
        self.cr_inf = factory.informer("ControllerRevision")
        for inf in (self.ds_inf, self.pod_inf, self.cr_inf):
            ensure_indexes(inf)
        self.ds_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._ds_deleted)
        self.pod_inf.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.node_inf.add_handler(self._all, self._node_updated, self._all)
        self.cr_inf.add_handler(self._owner_of, lambda old, new: self._owner_of(new), self._owner_of)

    def informers(self):
        return [self.ds_inf, self.pod_inf, self.node_inf, self.cr_inf]

    # --------------------------------------------------------- handlers
    def _ds_deleted(self, ds) -> None:
        self.expectations.delete(key_of(ds))
        self.enqueue(ds)

    def _all(self, _obj=None) -> None:
        for ds in self.ds_inf.list():
            self.enqueue(ds)

    def _node_updated(self, old, new) -> None:
        if (old.metadata.labels != new.metadata.labels or old.spec != new.spec):
            self._all()

    def _resolve(self, obj):
        ref = podutil.controller_ref(obj)
        if ref is None or ref.kind != "DaemonSet":
            return None
        ds = self.ds_inf.get(obj.metadata.namespace, ref.name)
        return ds if ds is not None and ds.metadata.uid == ref.uid else None

    def _owner_of(self, obj) -> None:
        ds = self._resolve(obj)
        if ds is not None:
            self.enqueue(ds)

    def _matching(self, pod) -> None:
        for ds in self.ds_inf.list(pod.metadata.namespace):
            if ds.spec.HasField("selector") and selectors.from_proto(ds.spec.selector).matches(pod.metadata.labels):
                self.enqueue(ds)

    def _pod_added(self, pod) -> None:
        if podutil.is_terminating(pod):
            self._pod_deleted(pod)
            return
        ds = self._resolve(pod)
        if ds is not None:
            self.expectations.creation_observed(key_of(ds))
            self.enqueue(ds)
        elif podutil.controller_ref(pod) is None:
            self._matching(pod)

    def _pod_updated(self, old, pod) -> None:
        if podutil.is_terminating(pod) and not podutil.is_terminating(old):
            self._pod_deleted(pod)
            return
        for p in (old, pod):
            self._owner_of(p)
        if podutil.controller_ref(pod) is None and old.metadata.labels != pod.metadata.labels:
            self._matching(pod)
        ds = self._resolve(pod)
        if ds is not None and ds.spec.min_ready_seconds > 0 and podutil.is_pod_ready(pod) \
                and not podutil.is_pod_ready(old):
            self.queue.add_after(key_of(ds), ds.spec.min_ready_seconds + 0.1)

    def _pod_deleted(self, pod) -> None:
        ds = self._resolve(pod)
        if ds is not None:
            self.expectations.deletion_observed(key_of(ds), pod.metadata.uid)
            self.enqueue(ds)

    # ------------------------------------------------------------- sync
    async def sync(self, key: str) -> None:
        ds = self.ds_inf.get_by_key(key)
        if ds is None:
            self.expectations.delete(key)
            return
        try:
            selector = selectors.from_field(ds.spec)
        except ValueError as exc:
            self.log.error("%s: invalid selector: %s", key, exc)
            return
        nodes = self.node_inf.list()
        pods, node_pods = await self.daemon_pods(ds, selector)
        cur, old = await self.construct_history(ds, selector)
        hash_ = cur.metadata.labels[workloads.CONTROLLER_REVISION_HASH]
        if not self.expectations.satisfied(key) or podutil.is_terminating(ds):
            await self.update_status(ds, nodes, node_pods, hash_, observed=False)
            return
        now = self.clock()
        create, delete, failed = du.manage_plan(ds, nodes, node_pods, hash_, now,
                                                lambda node: self._failed_allowed(key, node, now))
        for p in failed:
            self.event(ds, "Warning", "FailedDaemonPod", f"Found failed daemon pod {p.metadata.namespace}/"
                       f"{p.metadata.name} on node {du.target_node(p)}, will try to kill it")
        await self.sync_nodes(key, ds, delete, create, hash_)
        if self.expectations.satisfied(key) and ds.spec.update_strategy.type == "RollingUpdate":
            pods, node_pods = await self.daemon_pods(ds, selector)      # what manage changed, as cached
            delete, create = du.rolling_plan(ds, nodes, node_pods, hash_, self.clock())
            await self.sync_nodes(key, ds, delete, create, hash_)
        await self.cleanup_history(ds, old, pods)
        await self.update_status(ds, nodes, node_pods, hash_, observed=True)

    async def daemon_pods(self, ds, selector):
        """(claimed pods, pods by target node); finished pods being deleted are left out."""
        pods = [p for p in self.pod_inf.list(ds.metadata.namespace)
                if not (podutil.is_terminating(p) and p.status.phase in ("Succeeded", "Failed"))]
        pods = await podutil.RefManager(self.client, ds, selector).claim(pods)
        node_pods: dict[str, list] = {}
        for p in pods:
            node_pods.setdefault(du.target_node(p), []).append(p)
        return pods, node_pods

    def _failed_allowed(self, key: str, node: str, now: float) -> bool:
        """failedPodsBackoff: a failed pod on a node is replaced at most once per back-off step."""
        delay, until = self.failed_backoff.get((key, node), (0.0, 0.0))
        if now < until:
            self.queue.add_after(key, until - now + 0.05)
            return False
        delay = min(FAILED_BACKOFF_MAX, delay * 2 if delay else FAILED_BACKOFF)
        self.failed_backoff[(key, node)] = (delay, now + delay)
        return True

    async def sync_nodes(self, key: str, ds, delete, create_on, hash_: str) -> None:
        create_on, delete = create_on[:self.burst], delete[:self.burst]
        if not create_on and not delete:
            return
        errs = await asyncio.gather(
            podcontrol.create_pods(self, key, ds, [du.new_pod(ds, node, hash_) for node in create_on]),
            self._delete(key, ds, delete), return_exceptions=True)
        for e in errs:
            if isinstance(e, BaseException):
                raise e

    async def _delete(self, key: str, ds, pods) -> None:
        if not pods:
            return
        errs = await podutil.delete_pods(self.client, self.expectations, key, pods)
        for p in pods:
            self.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {p.metadata.name}")
        if errs:
            raise errs[0]

    # ------------------------------------------------------------ status
    async def update_status(self, ds, nodes, node_pods, hash_: str, observed: bool) -> None:
        now = self.clock()
        counts = du.status_counts(ds, nodes, node_pods, hash_, now)
        st = codec.copy(ds.status)
        for k, v in counts.items():
            setattr(st, k, v)
        if observed:
            st.observed_generation = ds.metadata.generation
        if st != ds.status:
            new = codec.copy(ds)
            new.status.CopyFrom(st)
            try:
                await self.client.update_status(new)
            except errors.NotFound:
                return
        if ds.spec.min_ready_seconds > 0 and counts["number_ready"] != counts["number_available"]:
            self.queue.add_after(key_of(ds), ds.spec.min_ready_seconds)
