"""VolumeBinding: a pod's PersistentVolumeClaims decide where it may run
(kube-scheduler's plugins/volumebinding with its SchedulerVolumeBinder).

* PreFilter: pods without claims write nothing and cost one loop over their
  volumes (Filter then answers "all pass" at once, so the vectorised fast
  path is untouched). Otherwise every claim must exist (``persistentvolumeclaim
  "x" not found``, UnschedulableAndUnresolvable) and not be being deleted;
  a claim with a volumeName is *bound* (a Lost claim whose volume is gone:
  ``persistentvolumeclaim "x" bound to non-existent persistentvolume "y"``);
  an unbound claim whose class binds ``WaitForFirstConsumer`` is *to bind*;
  any other unbound claim gives ``pod has unbound immediate
  PersistentVolumeClaims`` (the PV controller binds those by itself).
* Filter, over all node slots: a bound claim's volume must exist (``node(s)
  unavailable due to one or more pvc(s) bound to non-existent pv(s)``) and
  its ``nodeAffinity`` must admit the node (``node(s) had volume node
  affinity conflict``) — so a pod whose data lives on a dead node stays
  Pending, that node failing on its not-ready taint and every other on the
  affinity, and the FailedScheduling event says so. A claim to bind needs,
  on the node, either an available volume that satisfies it (class, access
  modes, capacity, selector, node affinity) or a class with a provisioner
  (not ``kubernetes.io/no-provisioner``) whose ``allowedTopologies`` admit
  the node (checkVolumeProvisions: terms ORed, each ``key In values`` on the
  node's labels, none = every node); else ``node(s) didn't find available
  persistent volumes to bind``. A claim that already carries
  ``volume.kubernetes.io/selected-node`` (an earlier attempt chose a node
  and provisioning may be under way) only fits that node.
* PreBind: for the claims to bind, set ``volume.kubernetes.io/selected-node``
  to the chosen node (the PV controller then binds a matching volume, or
  the local-path provisioner makes one pinned to the node), then wait until
  every claim is Bound, at most ``bindTimeoutSeconds`` (600 s as in
  kube-scheduler). Waiting is asynchronous: the pod stays assumed on the
  node meanwhile; a failure or timeout un-assumes it and backs it off.

``StorageListers`` reads the scheduler's PVC, PV and StorageClass informers
and writes claims through its client. Static volume matching here is a
subset of the PV controller's (controllers/pvmatch.py: components share no
code): the controller makes the actual choice once the node is selected.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import numpy as np

from machinery import codec, errors, quantity, selectors
from machinery.pb import core_pb2
from scheduler.cycle_state import StateData
from scheduler.framework import (SUCCESS, Code, FilterPlugin, FilterResult, Handle, PodInfo, PreBindPlugin,
                                 PreFilterPlugin, Status)
from scheduler.plugins.affinity import term_mask

log = logging.getLogger("kctl.scheduler.volumebinding")

SELECTED_NODE = "volume.kubernetes.io/selected-node"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
ERR_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
ERR_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
DEFAULT_BIND_TIMEOUT = 600.0


class StorageListers:
    """The claims, volumes and classes the plugin reads (informer caches) and the client it writes with."""

    def __init__(self, client, claims, volumes, classes):
        self.client, self.claims, self.volumes, self.classes = client, claims, volumes, classes

    def claim(self, ns: str, name: str):
        return self.claims.get(ns, name)

    def volume(self, name: str):
        return self.volumes.get("", name)

    def storage_class(self, name: str):
        return self.classes.get("", name) if name else None

    def all_volumes(self):
        return self.volumes.list()


@dataclass
class _State(StateData):
    bound: list = field(default_factory=list)       # claims with a volumeName
    to_bind: list = field(default_factory=list)     # unbound WaitForFirstConsumer claims


def _claim_names(pod) -> list[str]:
    return [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.HasField("persistent_volume_claim")]


def _class_name(pvc) -> str:
    return pvc.spec.storage_class_name if pvc.spec.HasField("storage_class_name") else ""


def _size(text: str) -> int:
    try:
        return quantity.parse(text or "0")
    except quantity.QuantityError:
        return 0


def affinity_mask(snapshot, pv) -> np.ndarray:
    """Slots the volume's required node affinity admits (all without one)."""
    if not pv.spec.HasField("node_affinity"):
        return np.ones(snapshot.num_slots, dtype=bool)
    m = np.zeros(snapshot.num_slots, dtype=bool)
    for term in pv.spec.node_affinity.required.node_selector_terms:
        m |= term_mask(snapshot, term)
    return m


def topology_mask(snapshot, sc) -> np.ndarray:
    """Slots the class's allowedTopologies admit (all without any)."""
    if not sc.allowed_topologies:
        return np.ones(snapshot.num_slots, dtype=bool)
    m = np.zeros(snapshot.num_slots, dtype=bool)
    for t in sc.allowed_topologies:
        m |= term_mask(snapshot, core_pb2.NodeSelectorTerm(match_expressions=[
            core_pb2.NodeSelectorRequirement(key=r.key, operator="In", values=r.values)
            for r in t.match_label_expressions]))
    return m


def satisfies(pv, pvc) -> bool:
    """An available volume that can serve the claim, node aside (CheckVolumeSatisfyClaim + selector)."""
    if pv.metadata.HasField("deletion_timestamp") or pv.spec.storage_class_name != _class_name(pvc):
        return False
    if pv.spec.HasField("claim_ref"):
        ref = pv.spec.claim_ref
        if ref.name != pvc.metadata.name or (ref.namespace or "default") != pvc.metadata.namespace:
            return False
    elif pv.status.phase not in ("Available", "Pending", ""):
        return False
    if not set(pvc.spec.access_modes) <= set(pv.spec.access_modes):
        return False
    if _size(pv.spec.capacity.get("storage")) < _size(pvc.spec.resources.requests.get("storage")):
        return False
    if pvc.spec.HasField("selector") and not selectors.from_proto(pvc.spec.selector).matches(pv.metadata.labels):
        return False
    return True


class VolumeBinding(PreFilterPlugin, FilterPlugin, PreBindPlugin):
    name = "VolumeBinding"
    static = False
    ARGS = frozenset({"bindTimeoutSeconds"})
    STATE_KEY = "PreFilter" + name

    def __init__(self, storage: StorageListers | None, bind_timeout: float = DEFAULT_BIND_TIMEOUT):
        self.storage = storage
        self.bind_timeout = bind_timeout

    @classmethod
    def new(cls, args: dict, handle: Handle) -> "VolumeBinding":
        return cls(getattr(handle, "storage", None), float(args.get("bindTimeoutSeconds", DEFAULT_BIND_TIMEOUT)))

    def _unresolvable(self, message: str) -> Status:
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (message,), self.name)

    # ------------------------------------------------------------ PreFilter
    def pre_filter(self, state, pod: PodInfo, snapshot) -> Status:
        volumes = pod.pod.spec.volumes
        if not volumes:
            return SUCCESS                   # the common case: skip, Filter answers at once
        names = _claim_names(pod.pod)
        if not names:
            return SUCCESS
        if self.storage is None:
            return self._unresolvable("the scheduler has no PersistentVolumeClaim informer")
        st = _State()
        for name in names:
            pvc = self.storage.claim(pod.namespace, name)
            if pvc is None:
                return self._unresolvable(f'persistentvolumeclaim "{name}" not found')
            if pvc.metadata.HasField("deletion_timestamp"):
                return self._unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            if pvc.spec.volume_name:
                if pvc.status.phase == "Lost" and self.storage.volume(pvc.spec.volume_name) is None:
                    return self._unresolvable(f'persistentvolumeclaim "{name}" bound to non-existent '
                                              f'persistentvolume "{pvc.spec.volume_name}"')
                st.bound.append(pvc)
                continue
            sc = self.storage.storage_class(_class_name(pvc))
            if sc is not None and sc.volume_binding_mode == "WaitForFirstConsumer":
                st.to_bind.append(pvc)
            else:
                return self._unresolvable(ERR_UNBOUND_IMMEDIATE)
        state.write(self.STATE_KEY, st)
        return SUCCESS

    # ------------------------------------------------------------ Filter
    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        n = snapshot.num_slots
        st = state.read(self.STATE_KEY)
        if st is None:
            return FilterResult(np.zeros(n, dtype=np.int32), [SUCCESS])
        node_ok, bind_ok, pv_ok = (np.ones(n, dtype=bool) for _ in range(3))
        for pvc in st.bound:
            pv = self.storage.volume(pvc.spec.volume_name)
            if pv is None:
                pv_ok[:] = False
                continue
            node_ok &= affinity_mask(snapshot, pv)
        for pvc in st.to_bind:
            bind_ok &= self._bindable(snapshot, pvc)
        codes = np.zeros(n, dtype=np.int32)
        statuses = [SUCCESS]
        for mask, reasons in (((~node_ok) & bind_ok, (ERR_NODE_CONFLICT,)),
                              (node_ok & ~bind_ok, (ERR_BIND_CONFLICT,)),
                              ((~node_ok) & ~bind_ok, (ERR_NODE_CONFLICT, ERR_BIND_CONFLICT)),
                              (~pv_ok, (ERR_PV_NOT_EXIST,))):
            if mask.any():
                codes[mask] = len(statuses)
                statuses.append(Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons, self.name))
        return FilterResult(codes, statuses)

    def feasible(self, state, pod: PodInfo, snapshot, mask: np.ndarray) -> np.ndarray:
        if state.read(self.STATE_KEY) is None:
            return mask
        return mask & (self.filter(state, pod, snapshot).codes == 0)

    def _bindable(self, snapshot, pvc) -> np.ndarray:
        """Slots where the unbound claim can get a volume."""
        n = snapshot.num_slots
        selected = pvc.metadata.annotations.get(SELECTED_NODE)
        if selected:
            m = np.zeros(n, dtype=bool)
            i = snapshot.slot(selected)
            if i is not None:
                m[i] = True
            return m
        m = np.zeros(n, dtype=bool)
        for pv in self.storage.all_volumes():
            if satisfies(pv, pvc):
                m |= affinity_mask(snapshot, pv)
        sc = self.storage.storage_class(_class_name(pvc))
        if sc is not None and sc.provisioner and sc.provisioner != NO_PROVISIONER:
            m |= topology_mask(snapshot, sc)
        return m

    # ------------------------------------------------------------ PreBind
    def pre_bind(self, state, pod: PodInfo, node: str):
        st = state.read(self.STATE_KEY)
        if st is None or not st.to_bind:
            return SUCCESS
        return self._bind_claims([(p.metadata.namespace, p.metadata.name) for p in st.to_bind], node)

    async def _bind_claims(self, keys: list[tuple[str, str]], node: str) -> Status:
        try:
            for ns, name in keys:
                await self._select_node(ns, name, node)
            await asyncio.wait_for(self._all_bound(keys), self.bind_timeout)
        except asyncio.TimeoutError:
            return Status(Code.ERROR, (f"binding volumes: timed out waiting for the condition "
                                       f"({self.bind_timeout:g}s)",), self.name)
        except errors.ApiError as exc:
            return Status(Code.ERROR, (f"binding volumes: {exc}",), self.name)
        return SUCCESS

    async def _select_node(self, ns: str, name: str, node: str) -> None:
        for _ in range(5):
            pvc = self.storage.claim(ns, name) or await self.storage.client.get("PersistentVolumeClaim", name, ns)
            if pvc.spec.volume_name or pvc.metadata.annotations.get(SELECTED_NODE) == node:
                return
            new = codec.copy(pvc)
            new.metadata.annotations[SELECTED_NODE] = node
            try:
                await self.storage.client.update(new)
                log.info("claim %s/%s: selected node %s", ns, name, node)
                return
            except errors.Conflict:
                await asyncio.sleep(0.1)
        raise errors.Conflict(f'persistentvolumeclaim "{name}": could not set {SELECTED_NODE}')

    async def _all_bound(self, keys: list[tuple[str, str]]) -> None:
        while True:
            claims = [self.storage.claim(ns, name) for ns, name in keys]
            if any(c is None for c in claims):
                raise errors.NotFound("a claim of the pod was deleted while its volumes were being bound")
            if all(c.status.phase == "Bound" and c.spec.volume_name for c in claims):
                return
            await asyncio.sleep(0.2)
