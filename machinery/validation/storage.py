"""PersistentVolume, PersistentVolumeClaim and StorageClass validation
(pkg/apis/core/validation: ValidatePersistentVolume, ValidatePersistentVolumeClaim
and their Update/Status variants; pkg/apis/storage/validation: ValidateStorageClass).

kctl's PVs have two volume sources, `hostPath` and `local` (the node agent
mounts directories); a `local` PV must carry node affinity, as in
Kubernetes. A claim's spec is immutable once created, except that the
binder may fill `volumeName` and `storageClassName` from empty, and
`resources.requests` may grow (never shrink) on a bound claim.
"""
from __future__ import annotations

from machinery import quantity
from machinery.errors import FieldError, forbidden, invalid, not_supported, required, too_long
from machinery.validation.common import (IMMUTABLE_MSG, each, is_dns1123_subdomain, is_qualified_name,
                                         validate_selector_proto)
from machinery.validation.scheduling import validate_node_selector_requirement

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
SC_RECLAIM_POLICIES = ("Delete", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
PV_PHASES = ("Pending", "Available", "Bound", "Released", "Failed")
PVC_PHASES = ("Pending", "Bound", "Lost")
PV_SOURCES = (("host_path", "hostPath"), ("local", "local"))
MAX_PROVISIONER_PARAMETERS = 512
MAX_PROVISIONER_PARAMETERS_SIZE = 256 * 1024
PV_SOURCE_IMMUTABLE = "spec.persistentvolumesource is immutable after creation"
PVC_SPEC_IMMUTABLE = ("spec is immutable after creation except resources.requests and "
                      "volumeAttributesClassName for bound claims")


def _access_modes(modes, path: str, *, claim: bool) -> list[FieldError]:
    if not modes:
        return [required(path, "at least 1 access mode is required" if claim else "")]
    errs = [not_supported(path, m, ACCESS_MODES) for m in modes if m not in ACCESS_MODES]
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _volume_mode(mode: str, path: str) -> list[FieldError]:
    return [] if not mode or mode in VOLUME_MODES else [not_supported(path, mode, VOLUME_MODES)]


def _class_name(name: str, path: str) -> list[FieldError]:
    return each(path, name, is_dns1123_subdomain(name)) if name else []


def _storage_quantity(text: str, path: str, *, positive: bool) -> list[FieldError]:
    try:
        q = quantity.parse(text)
    except quantity.QuantityError as exc:
        return [invalid(path, text, str(exc))]
    if positive and q <= 0:
        return [invalid(path, text, "must be greater than zero")]
    if q < 0:
        return [invalid(path, text, "must be greater than or equal to 0")]
    return []


def _no_backsteps(path_value: str, path: str) -> list[FieldError]:
    """validatePathNoBacksteps: a PV's path may not contain a `..` element."""
    if ".." in path_value.split("/"):
        return [invalid(path, path_value, "must not contain '..'")]
    return []


# ------------------------------------------------------- PersistentVolume

def _node_affinity(aff, path: str) -> list[FieldError]:
    if not aff.HasField("required"):
        return [required(f"{path}.required", "must specify required node constraints")]
    terms, rp = aff.required.node_selector_terms, f"{path}.required.nodeSelectorTerms"
    errs = [] if terms else [required(rp, "must have at least one node selector term")]
    for i, term in enumerate(terms):
        for j, r in enumerate(term.match_expressions):
            errs += validate_node_selector_requirement(r, f"{rp}[{i}].matchExpressions[{j}]")
        for j, r in enumerate(term.match_fields):
            errs += validate_node_selector_requirement(r, f"{rp}[{i}].matchFields[{j}]", field_selector=True)
    return errs


def validate_persistent_volume(pv) -> list[FieldError]:
    spec, errs = pv.spec, []
    errs += _access_modes(spec.access_modes, "spec.accessModes", claim=False)
    if not spec.capacity:
        errs.append(required("spec.capacity", ""))
    elif "storage" not in spec.capacity or len(spec.capacity) > 1:
        errs.append(not_supported("spec.capacity", dict(spec.capacity), ("storage",)))
    else:
        errs += _storage_quantity(spec.capacity["storage"], "spec.capacity[storage]", positive=False)
    policy = spec.persistent_volume_reclaim_policy
    if policy and policy not in RECLAIM_POLICIES:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
    errs += _class_name(spec.storage_class_name, "spec.storageClassName")
    errs += _volume_mode(spec.volume_mode, "spec.volumeMode")
    present = [(f, j) for f, j in PV_SOURCES if spec.HasField(f)]
    if not present:
        errs.append(required("spec", "must specify a volume type"))
    for _, j in present[1:]:
        errs.append(forbidden(f"spec.{j}", "may not specify more than 1 volume type"))
    if spec.HasField("host_path"):
        if not spec.host_path.path:
            errs.append(required("spec.hostPath.path", ""))
        errs += _no_backsteps(spec.host_path.path, "spec.hostPath.path")
    if spec.HasField("local"):
        if not spec.local.path:
            errs.append(required("spec.local.path", ""))
        errs += _no_backsteps(spec.local.path, "spec.local.path")
        if not spec.HasField("node_affinity"):
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    if spec.HasField("node_affinity"):
        errs += _node_affinity(spec.node_affinity, "spec.nodeAffinity")
    if spec.HasField("claim_ref") and not spec.claim_ref.name:
        errs.append(required("spec.claimRef.name", ""))
    return errs


def validate_persistent_volume_update(new, old) -> list[FieldError]:
    errs = []
    if any(getattr(new.spec, f) != getattr(old.spec, f) for f, _ in PV_SOURCES):
        errs.append(forbidden("spec.persistentvolumesource", PV_SOURCE_IMMUTABLE))
    if new.spec.volume_mode != old.spec.volume_mode:
        errs.append(invalid("spec.volumeMode", new.spec.volume_mode, IMMUTABLE_MSG))
    if old.spec.HasField("node_affinity") and new.spec.node_affinity != old.spec.node_affinity:
        errs.append(invalid("spec.nodeAffinity", "", IMMUTABLE_MSG))
    return errs


def validate_persistent_volume_status(pv) -> list[FieldError]:
    phase = pv.status.phase
    return [not_supported("status.phase", phase, PV_PHASES)] if phase and phase not in PV_PHASES else []


# -------------------------------------------------- PersistentVolumeClaim

def validate_persistent_volume_claim(pvc) -> list[FieldError]:
    spec = pvc.spec
    errs = _access_modes(spec.access_modes, "spec.accessModes", claim=True)
    if spec.HasField("selector"):
        errs += validate_selector_proto(spec.selector, "spec.selector")
    requests = spec.resources.requests
    if "storage" not in requests:
        errs.append(required("spec.resources[storage]", ""))
    else:
        errs += _storage_quantity(requests["storage"], "spec.resources.requests[storage]", positive=True)
    for name in sorted(set(requests) | set(spec.resources.limits)):
        if name != "storage":
            which = "requests" if name in requests else "limits"
            errs.append(not_supported(f"spec.resources.{which}[{name}]", name, ("storage",)))
    if spec.HasField("storage_class_name"):
        errs += _class_name(spec.storage_class_name, "spec.storageClassName")
    errs += _volume_mode(spec.volume_mode, "spec.volumeMode")
    return errs


def _claim_spec_without_mutables(pvc, old):
    spec = type(pvc.spec)()
    spec.CopyFrom(pvc.spec)
    if not old.spec.volume_name:               # the binder binds by filling volumeName
        spec.volume_name = ""
    if not old.spec.HasField("storage_class_name"):
        spec.ClearField("storage_class_name")  # the default class is filled in once
    if old.status.phase == "Bound":
        del spec.resources.requests["storage"]
    return spec


def validate_persistent_volume_claim_update(new, old) -> list[FieldError]:
    errs = []
    if _claim_spec_without_mutables(new, old) != _claim_spec_without_mutables(old, old):
        errs.append(forbidden("spec", PVC_SPEC_IMMUTABLE))
    elif old.status.phase == "Bound" and "storage" in new.spec.resources.requests:
        try:
            smaller = (quantity.parse(new.spec.resources.requests["storage"])
                       < quantity.parse(old.spec.resources.requests.get("storage", "0")))
        except quantity.QuantityError:
            smaller = False                     # reported by validate_persistent_volume_claim
        if smaller:
            errs.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
    return errs


def validate_persistent_volume_claim_status(pvc) -> list[FieldError]:
    phase, errs = pvc.status.phase, []
    if phase and phase not in PVC_PHASES:
        errs.append(not_supported("status.phase", phase, PVC_PHASES))
    for i, m in enumerate(pvc.status.access_modes):
        if m not in ACCESS_MODES:
            errs.append(not_supported(f"status.accessModes[{i}]", m, ACCESS_MODES))
    for name, text in sorted(pvc.status.capacity.items()):
        errs += _storage_quantity(text, f"status.capacity[{name}]", positive=False)
    return errs


# ----------------------------------------------------------- StorageClass

def validate_storage_class(sc) -> list[FieldError]:
    errs = []
    if not sc.provisioner:
        errs.append(required("provisioner", ""))
    elif len(sc.provisioner) > 63:
        errs.append(too_long("provisioner", 63))
    else:
        errs += each("provisioner", sc.provisioner, is_qualified_name(sc.provisioner.lower()))
    if len(sc.parameters) > MAX_PROVISIONER_PARAMETERS:
        errs.append(too_long("parameters", MAX_PROVISIONER_PARAMETERS))
    size = sum(len(k) + len(v) for k, v in sc.parameters.items())
    if size > MAX_PROVISIONER_PARAMETERS_SIZE:
        errs.append(too_long("parameters", MAX_PROVISIONER_PARAMETERS_SIZE))
    for k in sorted(sc.parameters):
        if not k:
            errs.append(invalid("parameters", sc.parameters[k], "key must not be empty"))
    if sc.HasField("reclaim_policy") and sc.reclaim_policy not in SC_RECLAIM_POLICIES:
        errs.append(not_supported("reclaimPolicy", sc.reclaim_policy, SC_RECLAIM_POLICIES))
    if not sc.HasField("volume_binding_mode") or not sc.volume_binding_mode:
        errs.append(required("volumeBindingMode", ""))
    elif sc.volume_binding_mode not in BINDING_MODES:
        errs.append(not_supported("volumeBindingMode", sc.volume_binding_mode, BINDING_MODES))
    for i, term in enumerate(sc.allowed_topologies):
        p = f"allowedTopologies[{i}]"
        if not term.match_label_expressions:
            errs.append(required(f"{p}.matchLabelExpressions", "must have at least one label expression"))
        for j, r in enumerate(term.match_label_expressions):
            errs += each(f"{p}.matchLabelExpressions[{j}].key", r.key, is_qualified_name(r.key))
            if not r.values:
                errs.append(required(f"{p}.matchLabelExpressions[{j}].values",
                                     "must specify as least one value"))
    return errs


def validate_storage_class_update(new, old) -> list[FieldError]:
    errs = []
    if dict(new.parameters) != dict(old.parameters):
        errs.append(forbidden("parameters", "updates to parameters are forbidden."))
    if new.provisioner != old.provisioner:
        errs.append(forbidden("provisioner", "updates to provisioner are forbidden."))
    if new.reclaim_policy != old.reclaim_policy:
        errs.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    if new.volume_binding_mode != old.volume_binding_mode:
        errs.append(invalid("volumeBindingMode", new.volume_binding_mode, IMMUTABLE_MSG))
    return errs
