"""One strategy per kind: what the server does to an object on create,
update, status update and delete, before it is written (Kubernetes'
registry strategies). Pure functions on messages, no I/O; crud.py calls
them and does the etcd work.

- create: server-set metadata (uid, creationTimestamp, generation 1), the
  status reset each kind gets (a new Pod is Pending with its QoS class, a new
  Namespace Active, PersistentVolumes and claims Pending with their
  protection finalizer, controllers' objects start with an empty status, a
  Job gets its generated selector and pod labels), defaulting, validation,
  canonical quantities;
- update: identity and server-set metadata kept from the stored object,
  status kept (only UpdateStatus writes it), generation +1 when anything
  outside metadata and status changed;
- status update: everything but status kept from the stored object;
- delete: the grace period a kind gets (only bound, running pods are
  deleted gracefully; the rule is machinery/deletion.py, which the unit
  tests' FakeClient shares).
"""
from __future__ import annotations

import random
import time
import uuid

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from machinery import csr as csrs, defaults, deletion, errors, kinds, validation, workloads
from machinery.errors import FieldError

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet


def now() -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(time.time()))


def generate_name(base: str) -> str:
    return base[:58] + "".join(random.choice(_NAME_CHARS) for _ in range(5))


def _body(obj: Message) -> bytes:
    """Everything but metadata and status: what `generation` tracks."""
    c = type(obj)()
    c.CopyFrom(obj)
    c.ClearField("metadata")
    if c.DESCRIPTOR.fields_by_name.get("status") is not None:
        c.ClearField("status")
    c.api_version = c.kind = ""
    return c.SerializeToString(deterministic=True)


def _qos(pod) -> str:
    requests = limits = False
    guaranteed = True
    for c in pod.spec.containers:
        r, lim = c.resources.requests, c.resources.limits
        requests = requests or bool(r)
        limits = limits or bool(lim)
        for res in ("cpu", "memory"):
            if res not in lim or (res in r and r[res] != lim[res]):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


class Strategy:
    def __init__(self, info: kinds.KindInfo):
        self.info = info

    # -------------------------------------------------------------- create
    def prepare_for_create(self, obj: Message, namespace: str) -> None:
        md = obj.metadata
        md.namespace = namespace if self.info.namespaced else ""
        md.uid = str(uuid.uuid4())
        md.creation_timestamp.CopyFrom(now())
        md.generation = 1
        md.resource_version = ""
        md.ClearField("deletion_timestamp")
        md.ClearField("deletion_grace_period_seconds")
        obj.api_version, obj.kind = self.info.api_version, self.info.kind
        self.reset_status(obj)

    def reset_status(self, obj: Message) -> None:
        if self.info.has_status and self.info.kind != "Node":
            obj.ClearField("status")

    # -------------------------------------------------------------- update
    def prepare_for_update(self, new: Message, old: Message) -> None:
        self._keep_identity(new, old)
        if self.info.has_status:
            if old.HasField("status"):
                new.status.CopyFrom(old.status)
            else:
                new.ClearField("status")
        new.metadata.generation = old.metadata.generation + (1 if _body(new) != _body(old) else 0)

    def prepare_for_status_update(self, new: Message, old: Message, sub: str = "status") -> None:
        """Everything but status kept; sub is the subresource written
        ("status", or a kind's own such as CSRs' "approval")."""
        if sub != "status":
            raise errors.NotFound("the server could not find the requested resource")
        status = type(new.status)()
        status.CopyFrom(new.status)
        new.CopyFrom(old)
        new.status.CopyFrom(status)

    def _keep_identity(self, new: Message, old: Message) -> None:
        nmd, omd = new.metadata, old.metadata
        nmd.name, nmd.namespace = omd.name, omd.namespace
        # uid and creationTimestamp sent by the client must match (validation
        # says "field is immutable" otherwise: an object from an earlier
        # incarnation of the name); omitted, they are carried over.
        if not nmd.uid:
            nmd.uid = omd.uid
        if not nmd.HasField("creation_timestamp"):
            nmd.creation_timestamp.CopyFrom(omd.creation_timestamp)
        if omd.HasField("deletion_timestamp"):
            nmd.deletion_timestamp.CopyFrom(omd.deletion_timestamp)
        else:
            nmd.ClearField("deletion_timestamp")
        if omd.HasField("deletion_grace_period_seconds"):
            nmd.deletion_grace_period_seconds = omd.deletion_grace_period_seconds
        else:
            nmd.ClearField("deletion_grace_period_seconds")
        if not nmd.managed_fields:          # omitted: the live ones stay (Kubernetes' decodeLiveOrNew)
            nmd.managed_fields.extend(omd.managed_fields)
        new.api_version, new.kind = self.info.api_version, self.info.kind

    # ----------------------------------------------- defaulting/validation
    def default(self, obj: Message) -> None:
        defaults.apply_defaults(obj)

    def validate(self, obj: Message, old: Message | None = None) -> list[FieldError]:
        return list(validation.validate(obj, old))

    def validate_status(self, obj: Message, old: Message, sub: str = "status") -> list[FieldError]:
        return list(validation.validate_status_update(obj, old))

    def canonicalize(self, obj: Message, status_only: bool = False) -> None:
        defaults.canonicalize(obj, status_only)

    # -------------------------------------------------------------- delete
    def grace_period(self, obj: Message, requested: int | None) -> int:
        """Seconds of graceful deletion; 0 removes the object at once."""
        return 0


class PodStrategy(Strategy):
    def reset_status(self, pod) -> None:
        pod.ClearField("status")
        pod.status.phase = "Pending"
        pod.status.qos_class = _qos(pod)

    def prepare_for_status_update(self, new, old, sub: str = "status") -> None:
        super().prepare_for_status_update(new, old, sub)
        if not new.status.qos_class:
            new.status.qos_class = old.status.qos_class

    def grace_period(self, pod, requested: int | None) -> int:
        return deletion.pod_grace_period(pod, requested)


class NamespaceStrategy(Strategy):
    def reset_status(self, ns) -> None:
        ns.ClearField("status")
        ns.status.phase = "Active"


class ServiceStrategy(Strategy):
    def prepare_for_update(self, new, old) -> None:
        """Kubernetes' patchAllocatedValues: an update that leaves clusterIP or
        a nodePort empty keeps the allocated one; a type change away from
        NodePort/LoadBalancer drops the node ports it carried over (the
        allocator then releases them), and so does one to a service that no longer needs its
        healthCheckNodePort (Kubernetes' dropTypeDependentFields)."""
        spec, ospec = new.spec, old.spec
        if not spec.cluster_ip and not spec.cluster_ips and ospec.cluster_ip and spec.type != "ExternalName":
            spec.cluster_ip = ospec.cluster_ip
            spec.cluster_ips[:] = list(ospec.cluster_ips) or [ospec.cluster_ip]
        old_ports = {(p.port, p.protocol or "TCP"): p.node_port for p in ospec.ports if p.node_port}
        old_by_name = {p.name: p.node_port for p in ospec.ports if p.node_port and p.name}
        wants = spec.type in ("NodePort", "LoadBalancer")
        for p in spec.ports:
            had = old_ports.get((p.port, p.protocol or "TCP")) or old_by_name.get(p.name)
            if wants and not p.node_port and had:
                p.node_port = had
            elif not wants and p.node_port and p.node_port in old_ports.values():
                p.node_port = 0
        # dropTypeDependentFields: a healthCheckNodePort carried over from a service that needed one
        needs = spec.type == "LoadBalancer" and spec.external_traffic_policy == "Local"
        if not needs and spec.health_check_node_port == ospec.health_check_node_port:
            spec.health_check_node_port = 0
        super().prepare_for_update(new, old)


class VolumeStrategy(Strategy):
    """PersistentVolumes and PersistentVolumeClaims start Pending (the binder
    moves them on) and carry their protection finalizer from the start, as
    Kubernetes' StorageObjectInUseProtection admission plugin adds it; the
    pv/pvc protection controller removes it once nothing uses the object."""

    def __init__(self, info: kinds.KindInfo, finalizer: str):
        super().__init__(info)
        self.finalizer = finalizer

    def prepare_for_create(self, obj, namespace: str) -> None:
        super().prepare_for_create(obj, namespace)
        if self.finalizer not in obj.metadata.finalizers:
            obj.metadata.finalizers.append(self.finalizer)

    def reset_status(self, obj) -> None:
        obj.ClearField("status")
        obj.status.phase = "Pending"
class JobStrategy(Strategy):
    def prepare_for_create(self, job, namespace: str) -> None:
        super().prepare_for_create(job, namespace)
        workloads.generate_job_selector(job)


class CSRStrategy(Strategy):
    """CertificateSigningRequests (Kubernetes' registry/certificates strategy):
    a new request starts with no status (nobody creates a pre-approved one;
    the requestor is filled in by admission_csr); an update of the object
    changes only metadata; `status` writes status but keeps the Approved and
    Denied conditions as they were (adding or removing one is then refused
    by validation); `approval` writes only the conditions. Condition
    timestamps missing from a write are filled in."""

    def prepare_for_update(self, new, old) -> None:
        new.spec.CopyFrom(old.spec)
        super().prepare_for_update(new, old)

    def prepare_for_status_update(self, new, old, sub: str = "status") -> None:
        if sub not in ("status", "approval"):
            super().prepare_for_status_update(new, old, sub)
        _condition_times(new, old)
        conds = list(new.status.conditions)
        if sub == "approval":
            status = type(old.status)()
            status.CopyFrom(old.status)
            del status.conditions[:]
            status.conditions.extend(conds)
        else:
            status = type(new.status)()
            status.CopyFrom(new.status)
            for t in (csrs.APPROVED, csrs.DENIED):         # preserveConditionInstances
                was = [c for c in old.status.conditions if c.type == t]
                at = [i for i, c in enumerate(status.conditions) if c.type == t]
                if len(was) == len(at):
                    for i, c in zip(at, was):
                        status.conditions[i].CopyFrom(c)
        new.CopyFrom(old)
        new.status.CopyFrom(status)

    def validate_status(self, obj, old, sub: str = "status") -> list[FieldError]:
        from machinery.validation import certificates, meta
        return (meta.validate_object_meta_update(obj.metadata, old.metadata)
                + certificates.validate_csr(obj, old) + certificates.validate_csr_update(obj, old, sub))


def _condition_times(new, old) -> None:
    """populateConditionTimestamps: lastUpdateTime now when missing; lastTransitionTime
    kept from the old condition of the same type and status, else now."""
    stamp = now()
    for c in new.status.conditions:
        if not c.HasField("last_update_time"):
            c.last_update_time.CopyFrom(stamp)
        if not c.HasField("last_transition_time"):
            same = next((o for o in old.status.conditions if (o.type, o.status) == (c.type, c.status)
                         and o.HasField("last_transition_time")), None)
            c.last_transition_time.CopyFrom(same.last_transition_time if same else stamp)


STRATEGIES: dict[str, Strategy] = {}
for _info in kinds.KINDS:
    if _info.kind in ("PersistentVolume", "PersistentVolumeClaim"):
        _short = "pv" if _info.kind == "PersistentVolume" else "pvc"
        STRATEGIES[_info.kind] = VolumeStrategy(_info, f"kubernetes.io/{_short}-protection")
        continue
    _cls = {"Pod": PodStrategy, "Namespace": NamespaceStrategy, "Service": ServiceStrategy,
            "Job": JobStrategy, "CertificateSigningRequest": CSRStrategy}.get(_info.kind, Strategy)
    STRATEGIES[_info.kind] = _cls(_info)


def strategy(info: kinds.KindInfo) -> Strategy:
    return STRATEGIES[info.kind]
