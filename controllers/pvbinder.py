"""The PersistentVolume controller (Kubernetes' pkg/controller/volume/persistentvolume,
"persistentvolume-binder"): binds claims to volumes, provisions volumes for
the `kctl.io/local-path` class, and reclaims released volumes.

Claims (`claim:ns/name` keys):
- no storageClassName at all: the default class is filled in (Kubernetes'
  retroactive default StorageClass assignment), which re-queues the claim;
- unbound: the smallest fitting volume (controllers/pvmatch.py) is bound —
  PV first (claimRef, then status Bound), then the claim (volumeName, then
  status Bound with the volume's capacity and access modes). A claim whose
  class binds `WaitForFirstConsumer` stays Pending until it carries the
  `volume.kubernetes.io/selected-node` annotation (the scheduler's
  volume-binding plugin sets it); then only volumes that admit that node
  fit, and if none does, a `local-path` class provisions one: a hostPath PV
  pinned to the node and pre-bound to the claim, which the next sync binds —
  unless the class's `allowedTopologies` do not admit the node's labels
  (ProvisioningFailed; the scheduler does not pick such a node itself);
- bound: kept Bound while its volume points back; `Lost` when the volume is
  gone or bound to another claim.

Volumes (`volume:name` keys): no claimRef → Available; claimRef to a claim
that no longer exists (or has another uid) → Released, then the reclaim
policy: Retain keeps the PV, Delete deletes the PV object (a local-path
volume's data first, by a helper pod on its node: controllers/localpathcleanup.py),
Recycle is not supported (Failed).

On start, `ensure_default_class` creates the `local-path` StorageClass
(WaitForFirstConsumer, Delete) unless some class is already the default.
Every write is idempotent (only what differs is written) and every sync
re-reads the caches, so a crash anywhere is repaired by the next sync.
"""
from __future__ import annotations

from machinery import codec, errors, selectors
from machinery.informer import BY_NAMESPACE, index_by_namespace, key_of

from controllers import localpathcleanup as cleanup
from controllers import pvmatch as m
from controllers.base import Controller

CLAIM, VOLUME = "claim:", "volume:"
WAIT_MSG = "waiting for first consumer to be created before binding"
NO_CLASS_MSG = "no persistent volumes available for this claim and no storage class is set"
EXTERNAL_MSG = ("Waiting for a volume to be created either by the external provisioner '{}' or manually by the "
                "system administrator. If volume creation is delayed, please verify that the provisioner is "
                "running and correctly registered.")
IMMEDIATE_LOCAL_MSG = ("the local-path provisioner needs volumeBindingMode WaitForFirstConsumer: "
                       "a node's volume cannot be made before a pod has chosen the node")
LOST_MSG = "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
MISBOUND_MSG = "Two claims are bound to the same volume, this one is bound incorrectly"


async def ensure_default_class(client, log=None) -> None:
    """Create the `local-path` StorageClass unless a default class exists (idempotent)."""
    classes, _ = await client.list("StorageClass")
    if m.default_class(classes) is not None:
        return
    try:
        await client.create(m.default_local_path_class())
        if log is not None:
            log.info("created the default StorageClass %s", m.LOCAL_PATH_CLASS)
    except errors.AlreadyExists:
        pass                      # a non-default class of that name: the operator's choice


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"

    def __init__(self, client, factory, recorder=None, workers: int = 2, *, default_class: bool = True):
        super().__init__(client, factory, recorder, workers)
        self.create_default_class = default_class
        self.pvc_inf = factory.informer("PersistentVolumeClaim")
        self.pv_inf = factory.informer("PersistentVolume")
        self.sc_inf = factory.informer("StorageClass")
        self.node_inf = factory.informer("Node")
        self.helper_inf = factory.informer("Pod", cleanup.NAMESPACE, label_selector=cleanup.VOLUME_LABEL)
        if BY_NAMESPACE not in self.pvc_inf._indexers:
            self.pvc_inf.add_index(BY_NAMESPACE, index_by_namespace)
        self.pvc_inf.add_handler(self._claim, lambda o, n: self._claim(n), self._claim_deleted)
        self.pv_inf.add_handler(self._volume, lambda o, n: self._volume(n), self._volume_deleted)
        self.sc_inf.add_handler(self._class, lambda o, n: self._class(n), None)
        self.helper_inf.add_handler(self._helper, lambda o, n: self._helper(n), self._helper)

    def informers(self):
        return [self.pvc_inf, self.pv_inf, self.sc_inf, self.node_inf, self.helper_inf]

    # ------------------------------------------------------------ handlers
    def _claim(self, pvc) -> None:
        self.queue.add(CLAIM + key_of(pvc))

    def _claim_deleted(self, pvc) -> None:
        if pvc.spec.volume_name:
            self.queue.add(VOLUME + pvc.spec.volume_name)
        for pv in self.pv_inf.list():
            if m.claim_ref_matches(pv, pvc):
                self.queue.add(VOLUME + pv.metadata.name)

    def _volume(self, pv) -> None:
        self.queue.add(VOLUME + pv.metadata.name)
        if pv.spec.HasField("claim_ref"):
            self.queue.add(f"{CLAIM}{pv.spec.claim_ref.namespace or 'default'}/{pv.spec.claim_ref.name}")

    def _volume_deleted(self, pv) -> None:
        for pvc in self.pvc_inf.list():
            if pvc.spec.volume_name == pv.metadata.name:
                self._claim(pvc)

    def _helper(self, pod) -> None:
        self.queue.add(VOLUME + pod.metadata.labels[cleanup.VOLUME_LABEL])

    def _class(self, sc) -> None:
        for pvc in self.pvc_inf.list():
            if not pvc.spec.volume_name:
                self._claim(pvc)

    async def run(self) -> None:
        if self.create_default_class:
            await ensure_default_class(self.client, self.log)
        await super().run()

    async def sync(self, key: str) -> None:
        if key.startswith(CLAIM):
            pvc = self.pvc_inf.get_by_key(key[len(CLAIM):])
            if pvc is not None:
                await self.sync_claim(pvc)
        else:
            pv = self.pv_inf.get_by_key(key[len(VOLUME):])
            if pv is not None:
                await self.sync_volume(pv)

    # -------------------------------------------------------------- claims
    async def sync_claim(self, pvc) -> None:
        if not pvc.spec.HasField("storage_class_name"):
            sc = m.default_class(self.sc_inf.list())
            if sc is not None:
                new = codec.copy(pvc)
                new.spec.storage_class_name = sc.metadata.name
                await self.client.update(new)
                return                                     # the update re-queues the claim
        if pvc.spec.volume_name:
            await self._sync_bound_claim(pvc)
        elif not pvc.metadata.HasField("deletion_timestamp"):
            await self._sync_unbound_claim(pvc)

    async def _sync_unbound_claim(self, pvc) -> None:
        class_name = m.claim_class(pvc)
        sc = self.sc_inf.get_by_key(class_name) if class_name else None
        wait = sc is not None and sc.volume_binding_mode == "WaitForFirstConsumer"
        node_name = pvc.metadata.annotations.get(m.SELECTED_NODE, "")
        if wait and not node_name:
            await self._claim_phase(pvc, "Pending", "Normal", "WaitForFirstConsumer", WAIT_MSG)
            return
        node = self.node_inf.get_by_key(node_name) if node_name else None
        pv = m.best_match(pvc, self.pv_inf.list(), node if wait else None)
        if pv is not None:
            await self.bind(pvc, pv)
        elif sc is not None and sc.provisioner == m.LOCAL_PATH:
            await self._provision(pvc, sc, node_name, node)
        elif sc is None and not class_name:
            await self._claim_phase(pvc, "Pending", "Normal", "FailedBinding", NO_CLASS_MSG)
        elif sc is None:
            await self._claim_phase(pvc, "Pending", "Warning", "ProvisioningFailed",
                                    f'storageclass.storage.k8s.io "{class_name}" not found')
        elif sc.provisioner == m.NO_PROVISIONER:
            await self._claim_phase(pvc, "Pending", "Normal", "FailedBinding",
                                    "no persistent volumes available for this claim")
        else:
            await self._claim_phase(pvc, "Pending", "Normal", "ExternalProvisioning",
                                    EXTERNAL_MSG.format(sc.provisioner))

    async def _provision(self, pvc, sc, node_name: str, node) -> None:
        if not node_name:
            await self._claim_phase(pvc, "Pending", "Warning", "ProvisioningFailed", IMMEDIATE_LOCAL_MSG)
            return
        if node is None:
            await self._claim_phase(pvc, "Pending", "Warning", "ProvisioningFailed",
                                    f'failed to provision volume with StorageClass "{sc.metadata.name}": '
                                    f'node "{node_name}" not found')
            self.queue.add_after(CLAIM + key_of(pvc), 5.0)
            return
        labels = {m.HOSTNAME_LABEL: node.metadata.name, **node.metadata.labels}
        if not selectors.matches_topology(sc.allowed_topologies, labels):
            await self._claim_phase(pvc, "Pending", "Warning", "ProvisioningFailed",
                                    f'failed to provision volume with StorageClass "{sc.metadata.name}": '
                                    f'selected node "{node_name}" is not in the allowed topologies of the class')
            return
        if pvc.metadata.annotations.get(m.STORAGE_PROVISIONER) != sc.provisioner:
            new = codec.copy(pvc)
            new.metadata.annotations[m.STORAGE_PROVISIONER] = sc.provisioner
            new.metadata.annotations[m.BETA_STORAGE_PROVISIONER] = sc.provisioner
            await self.client.update(new)
            return                                         # re-queued by the update
        pv = m.local_path_volume(pvc, sc, node)
        try:
            await self.client.create(pv)
        except errors.AlreadyExists:
            return                                         # made by an earlier sync; binding follows
        self.event(pvc, "Normal", "ProvisioningSucceeded",
                   f"Successfully provisioned volume {pv.metadata.name} on node {node_name}")

    async def _sync_bound_claim(self, pvc) -> None:
        pv = self.pv_inf.get_by_key(pvc.spec.volume_name) or await self._live("PersistentVolume",
                                                                              pvc.spec.volume_name)
        if pv is None:
            if pvc.status.phase == "Bound" or pvc.metadata.annotations.get(m.BIND_COMPLETED) == "yes":
                await self._claim_phase(pvc, "Lost", "Warning", "ClaimLost", LOST_MSG)
            else:
                await self._claim_phase(pvc, "Pending", "Normal", "FailedBinding",
                                        f'volume "{pvc.spec.volume_name}" not found')
            return
        if not pv.spec.HasField("claim_ref") or m.claim_ref_matches(pv, pvc):
            why = m.unsatisfied(pv, pvc) if not pv.spec.HasField("claim_ref") else ""
            if why:
                await self._claim_phase(pvc, "Pending", "Warning", "VolumeMismatch",
                                        f'Cannot bind to requested volume "{pv.metadata.name}": {why}')
                return
            await self.bind(pvc, pv, by_controller=False)
        elif pvc.status.phase == "Bound":
            await self._claim_phase(pvc, "Lost", "Warning", "ClaimMisbound", MISBOUND_MSG)
        else:
            await self._claim_phase(pvc, "Pending", "Normal", "FailedBinding",
                                    f'volume "{pv.metadata.name}" already bound to a different claim.')

    async def bind(self, pvc, pv, *, by_controller: bool = True) -> None:
        """Bind both ways, writing only what is not yet so: PV claimRef, PV
        status, claim volumeName, claim status (bindVolumeToClaim, then
        bindClaimToVolume, as Kubernetes orders them)."""
        ref = m.claim_reference(pvc)
        if not m.claim_ref_matches(pv, pvc) or not pv.spec.claim_ref.uid:
            new = codec.copy(pv)
            new.spec.claim_ref.CopyFrom(ref)
            if by_controller:
                new.metadata.annotations[m.BOUND_BY_CONTROLLER] = "yes"
            pv = await self.client.update(new)
        pv = await self._volume_phase(pv, "Bound")
        if pvc.spec.volume_name != pv.metadata.name or pvc.metadata.annotations.get(m.BIND_COMPLETED) != "yes":
            new = codec.copy(pvc)
            new.spec.volume_name = pv.metadata.name
            new.metadata.annotations[m.BIND_COMPLETED] = "yes"
            if by_controller:
                new.metadata.annotations[m.BOUND_BY_CONTROLLER] = "yes"
            pvc = await self.client.update(new)
        st = pvc.status
        if (st.phase != "Bound" or list(st.access_modes) != list(pv.spec.access_modes)
                or dict(st.capacity) != dict(pv.spec.capacity)):
            new = codec.copy(pvc)
            new.status.phase = "Bound"
            del new.status.access_modes[:]
            new.status.access_modes.extend(pv.spec.access_modes)
            new.status.capacity.clear()
            new.status.capacity.update(pv.spec.capacity)
            await self.client.update_status(new)

    async def _claim_phase(self, pvc, phase: str, type_: str, reason: str, message: str) -> None:
        self.event(pvc, type_, reason, message)
        if pvc.status.phase != phase:
            new = codec.copy(pvc)
            new.status.phase = phase
            await self.client.update_status(new)

    # ------------------------------------------------------------- volumes
    async def sync_volume(self, pv) -> None:
        if not pv.spec.HasField("claim_ref"):
            await self._volume_phase(pv, "Available")
            return
        ref = pv.spec.claim_ref
        ns = ref.namespace or "default"
        if not ref.uid:                                    # pre-bound by the user: the claim binds it
            await self._volume_phase(pv, "Available")
            self.queue.add(f"{CLAIM}{ns}/{ref.name}")
            return
        pvc = self.pvc_inf.get(ns, ref.name)
        if pvc is None or pvc.metadata.uid != ref.uid:
            pvc = await self._live("PersistentVolumeClaim", ref.name, ns)  # the cache may lag
        if pvc is None or pvc.metadata.uid != ref.uid:
            await self._reclaim(pv)
        elif not pvc.spec.volume_name:
            self.queue.add(f"{CLAIM}{ns}/{ref.name}")       # binding in progress: the claim finishes it
        elif pvc.spec.volume_name == pv.metadata.name:
            await self._volume_phase(pv, "Bound")
        elif pv.metadata.annotations.get(m.BOUND_BY_CONTROLLER) == "yes":
            new = codec.copy(pv)                           # the claim went elsewhere: unbind
            new.spec.ClearField("claim_ref")
            del new.metadata.annotations[m.BOUND_BY_CONTROLLER]
            pv = await self.client.update(new)
            await self._volume_phase(pv, "Available")

    async def _reclaim(self, pv) -> None:
        if pv.status.phase in ("Released", "Failed"):
            policy = pv.spec.persistent_volume_reclaim_policy
            if policy == "Delete" and not pv.metadata.HasField("deletion_timestamp"):
                if not await self._data_removed(pv):
                    return                                  # the helper pod's updates re-queue the volume
                for kind, name, ns in (("PersistentVolume", pv.metadata.name, ""),
                                       ("Pod", cleanup.helper_name(pv), cleanup.NAMESPACE)):
                    try:
                        await self.client.delete(kind, name, ns)
                    except errors.NotFound:
                        pass
            elif policy == "Recycle" and pv.status.phase != "Failed":
                self.event(pv, "Warning", "VolumeFailedRecycle", "Recycle is not supported by kctl")
                await self._volume_phase(pv, "Failed", "Recycle is not supported by kctl")
            return
        await self._volume_phase(pv, "Released")           # its update re-queues the volume for the policy

    async def _data_removed(self, pv) -> bool:
        """True once a local-path volume's data is gone (a helper pod Succeeded) or it has none to remove."""
        where = cleanup.data_dir(pv)
        if where is None:
            return True
        pod = self.helper_inf.get(cleanup.NAMESPACE, cleanup.helper_name(pv))
        if pod is not None and pod.status.phase == "Succeeded":
            return True
        if pod is not None and pod.status.phase == "Failed":
            self.event(pv, "Warning", "VolumeFailedDelete", f"removing {where[1]} on node {where[0]} failed; retrying")
            await self.client.delete("Pod", pod.metadata.name, cleanup.NAMESPACE)
        elif pod is None:
            try:
                await self.client.create(cleanup.helper_pod(pv, *where))
            except errors.AlreadyExists:
                pass
        return False

    async def _volume_phase(self, pv, phase: str, message: str = ""):
        if pv.status.phase == phase and pv.status.message == message:
            return pv
        new = codec.copy(pv)
        new.status.phase, new.status.message = phase, message
        new.status.last_phase_transition_time.GetCurrentTime()
        new.status.last_phase_transition_time.nanos = 0
        return await self.client.update_status(new)

    async def _live(self, kind: str, name: str, namespace: str = ""):
        try:
            return await self.client.get(kind, name, namespace)
        except errors.NotFound:
            return None
