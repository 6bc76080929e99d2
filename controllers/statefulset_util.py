"""Pure StatefulSet decisions (Kubernetes' pkg/controller/statefulset/
stateful_set_utils.go): ordinals and names, a pod's identity (name,
`hostname`, `subdomain`, the pod-name/pod-index labels) and storage (one
PVC per volumeClaimTemplate and ordinal, `TEMPLATE-SET-ORDINAL`), which
revision a new pod gets, the PVC retention policy as owner references, and
the status counts. No I/O here; controllers/statefulset_control.py acts on
these answers.
"""
from __future__ import annotations

import re

from machinery import codec, kinds, workloads
from machinery.pb import meta_pb2

from controllers import podutil
from controllers.replicaset import pod_from_template

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = workloads.CONTROLLER_REVISION_HASH
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


# ----------------------------------------------------------- ordinals
def parent_and_ordinal(pod) -> tuple[str, int]:
    """getParentNameAndOrdinal: ("", -1) when the name has no ordinal suffix."""
    m = _ORDINAL.match(pod.metadata.name)
    return (m.group(1), int(m.group(2))) if m else ("", -1)


def ordinal(pod) -> int:
    return parent_and_ordinal(pod)[1]


def replicas(sts) -> int:
    return sts.spec.replicas if sts.spec.HasField("replicas") else 1


def start_ordinal(sts) -> int:
    return sts.spec.ordinals.start if sts.spec.HasField("ordinals") else 0


def end_ordinal(sts) -> int:
    """The last ordinal in range (start + replicas - 1)."""
    return start_ordinal(sts) + replicas(sts) - 1


def in_ordinal_range(pod, sts) -> bool:
    return start_ordinal(sts) <= ordinal(pod) <= end_ordinal(sts)


def is_member_of(sts, pod) -> bool:
    return parent_and_ordinal(pod)[0] == sts.metadata.name


def pod_name(sts, ord_: int) -> str:
    return f"{sts.metadata.name}-{ord_}"


def claim_name(sts, template, ord_: int) -> str:
    return f"{template.metadata.name}-{sts.metadata.name}-{ord_}"


# ----------------------------------------------------- pod state words
def is_created(pod) -> bool:
    return bool(pod.status.phase) or bool(pod.metadata.uid)


def is_failed(pod) -> bool:
    return pod.status.phase == "Failed"


def is_succeeded(pod) -> bool:
    return pod.status.phase == "Succeeded"


def is_running_and_ready(pod) -> bool:
    return pod.status.phase == "Running" and podutil.is_pod_ready(pod)


def is_running_and_available(pod, min_ready_seconds: int, now: float) -> bool:
    return pod.status.phase == "Running" and podutil.is_pod_available(pod, min_ready_seconds, now)


def is_healthy(pod) -> bool:
    return is_running_and_ready(pod) and not podutil.is_terminating(pod)


def revision_of(pod) -> str:
    return pod.metadata.labels.get(REVISION_LABEL, "")


# ------------------------------------------------ identity and storage
def claims_for(sts, ord_: int) -> dict:
    """getPersistentVolumeClaims: template name -> the PVC this ordinal uses (labels = template's
    plus the selector's matchLabels)."""
    claims = {}
    for t in sts.spec.volume_claim_templates:
        claim = codec.copy(t)
        claim.api_version, claim.kind = "v1", "PersistentVolumeClaim"
        claim.metadata.name = claim_name(sts, t, ord_)
        claim.metadata.namespace = sts.metadata.namespace
        claim.metadata.labels.update(sts.spec.selector.match_labels)
        claims[t.metadata.name] = claim
    return claims


def update_identity(sts, pod) -> None:
    """updateIdentity: name, namespace, hostname = pod name, subdomain = serviceName, the labels."""
    ord_ = ordinal(pod)
    pod.metadata.name, pod.metadata.namespace = pod_name(sts, ord_), sts.metadata.namespace
    pod.metadata.labels[POD_NAME_LABEL] = pod.metadata.name
    pod.metadata.labels[POD_INDEX_LABEL] = str(ord_)
    pod.spec.hostname = pod.metadata.name
    pod.spec.subdomain = sts.spec.service_name


def identity_matches(sts, pod) -> bool:
    parent, ord_ = parent_and_ordinal(pod)
    labels = pod.metadata.labels
    return (ord_ >= 0 and parent == sts.metadata.name and pod.metadata.name == pod_name(sts, ord_)
            and pod.metadata.namespace == sts.metadata.namespace
            and labels.get(POD_NAME_LABEL) == pod.metadata.name and labels.get(POD_INDEX_LABEL) == str(ord_))


def update_storage(sts, pod) -> None:
    """updateStorage: a volume per claim template (replacing a template volume of that name)."""
    claims = claims_for(sts, ordinal(pod))
    kept = [codec.copy(v) for v in pod.spec.volumes if v.name not in claims]
    del pod.spec.volumes[:]
    for name, claim in claims.items():
        v = pod.spec.volumes.add(name=name)
        v.persistent_volume_claim.claim_name = claim.metadata.name
    pod.spec.volumes.extend(kept)


def storage_matches(sts, pod) -> bool:
    by_name = {v.name: v for v in pod.spec.volumes}
    for name, claim in claims_for(sts, ordinal(pod)).items():
        v = by_name.get(name)
        if v is None or not v.HasField("persistent_volume_claim") \
                or v.persistent_volume_claim.claim_name != claim.metadata.name:
            return False
    return True


def new_pod(sts, ord_: int):
    """newStatefulSetPod: the template's pod, controlled by the set, with identity and storage."""
    pod = pod_from_template(sts)
    pod.metadata.generate_name = ""
    pod.metadata.name = pod_name(sts, ord_)
    update_identity(sts, pod)
    update_storage(sts, pod)
    return pod


def apply_revision(sts, revision):
    """ApplyRevision: the set with the template its ControllerRevision restores."""
    out = codec.copy(sts)
    out.spec.template.CopyFrom(workloads.template_from_revision(revision))
    return out


def versioned_pod(current_set, update_set, current_rev: str, update_rev: str, ord_: int):
    """newVersionedStatefulSetPod: ordinals below the partition (or below currentReplicas without a
    rollingUpdate block) are (re)created at the current revision, the rest at the update revision."""
    us = current_set.spec.update_strategy
    start = start_ordinal(current_set)
    if (us.type == "RollingUpdate" and not us.HasField("rolling_update")
            and ord_ < start + current_set.status.current_replicas) or \
            (us.HasField("rolling_update") and ord_ < start + us.rolling_update.partition):
        pod = new_pod(current_set, ord_)
        pod.metadata.labels[REVISION_LABEL] = current_rev
        return pod
    pod = new_pod(update_set, ord_)
    pod.metadata.labels[REVISION_LABEL] = update_rev
    return pod


def max_unavailable(sts) -> int | None:
    """getStatefulSetMaxUnavailable (rounded up, at least 1); None when the field is unset."""
    v = sts.spec.update_strategy.rolling_update.max_unavailable
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    n = v.int_val if kind == "int_val" else -(-int(v.str_val.rstrip("%")) * replicas(sts) // 100)
    return max(1, n)


# -------------------------------------------------- retention policy
def _ref(owner, kind: str) -> meta_pb2.OwnerReference:
    return meta_pb2.OwnerReference(api_version=kinds.BY_KIND[kind].api_version, kind=kind,
                                   name=owner.metadata.name, uid=owner.metadata.uid)


def claim_owner_refs(claim, sts, pod) -> list:
    """updateClaimOwnerRefForSetAndPod: whenDeleted=Delete -> the set owns the claim; whenScaled=Delete
    -> a scaled-down (out of range) pod owns it, so the garbage collector deletes it with the pod."""
    policy = sts.spec.persistent_volume_claim_retention_policy
    scaled_down = not in_ordinal_range(pod, sts)
    want_set = policy.when_deleted == "Delete" and not (policy.when_scaled == "Delete" and scaled_down)
    want_pod = policy.when_scaled == "Delete" and scaled_down
    refs = [r for r in claim.metadata.owner_references
            if not (r.uid == sts.metadata.uid or (r.kind == "Pod" and r.name == pod.metadata.name))]
    if want_set:
        refs.append(_ref(sts, "StatefulSet"))
    if want_pod and pod.metadata.uid:
        refs.append(_ref(pod, "Pod"))
    return refs


def claim_matches_policy(claim, sts, pod) -> bool:
    return list(claim.metadata.owner_references) == claim_owner_refs(claim, sts, pod)


def has_stale_owner_ref(claim, pod) -> bool:
    """A claim owned by an earlier pod of this name (another UID, or the new pod has none yet)."""
    return any(r.kind == "Pod" and r.name == pod.metadata.name and r.uid != pod.metadata.uid
               for r in claim.metadata.owner_references)


# --------------------------------------------------------------- status
def compute_status(pods, min_ready_seconds: int, current_rev: str, update_rev: str, now: float) -> dict:
    """computeReplicaStatus over the live replicas and the condemned pods."""
    out = dict(replicas=0, ready_replicas=0, available_replicas=0, current_replicas=0, updated_replicas=0)
    for pod in pods:
        if pod is None or not is_created(pod):
            continue
        out["replicas"] += 1
        if is_running_and_ready(pod):
            out["ready_replicas"] += 1
            if is_running_and_available(pod, min_ready_seconds, now):
                out["available_replicas"] += 1
        if not podutil.is_terminating(pod):
            rev = revision_of(pod)
            out["current_replicas"] += rev == current_rev
            out["updated_replicas"] += rev == update_rev
    return out


def complete_rolling_update(sts, status) -> None:
    """completeRollingUpdate: once every replica is updated and ready, the update revision is current."""
    if sts.spec.update_strategy.type == "RollingUpdate" and status.updated_replicas == status.replicas \
            and status.ready_replicas == status.replicas:
        status.current_replicas = status.updated_replicas
        status.current_revision = status.update_revision
