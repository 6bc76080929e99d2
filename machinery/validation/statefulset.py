"""StatefulSet validation (pkg/apis/apps/validation: ValidateStatefulSet,
ValidateStatefulSetUpdate, ValidateStatefulSetStatus), with Kubernetes'
field paths and messages. The selector/template rules are the ones the other
apps kinds share (validation.apps)."""
from __future__ import annotations

from machinery.errors import FieldError, forbidden, invalid, not_supported, required
from machinery.validation.apps import _as_number, _int_or_percent, _selector_and_template
from machinery.validation.common import (each, int_or_string_value, is_dns1035_label, is_dns1123_subdomain,
                                         non_negative)
from machinery.validation.meta import validate_template_meta
from machinery.validation.storage import validate_persistent_volume_claim

POLICIES = ("OrderedReady", "Parallel")
STRATEGIES = ("RollingUpdate", "OnDelete")
RETENTION = ("Retain", "Delete")
SPEC_UPDATE_MSG = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                   "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "
                   "and 'minReadySeconds' are forbidden")
_MUTABLE = ("replicas", "ordinals", "template", "update_strategy", "revision_history_limit",
            "persistent_volume_claim_retention_policy", "min_ready_seconds")
_ADS = "spec.template.spec.activeDeadlineSeconds"


def _strategy(us, path: str) -> list[FieldError]:
    if not us.type:
        return [required(f"{path}.type", "")]
    if us.type not in STRATEGIES:
        return [not_supported(f"{path}.type", us.type, STRATEGIES)]
    rp = f"{path}.rollingUpdate"
    if us.type == "OnDelete":
        return ([invalid(rp, "", "only allowed for updateStrategy 'RollingUpdate'")]
                if us.HasField("rolling_update") else [])
    ru, errs = us.rolling_update, []
    if ru.HasField("partition"):
        errs += non_negative(f"{rp}.partition", ru.partition)
    if ru.max_unavailable.WhichOneof("value") is not None:
        mp = f"{rp}.maxUnavailable"
        errs += _int_or_percent(ru.max_unavailable, mp)
        n = _as_number(ru.max_unavailable)
        if n == 0:
            errs.append(invalid(mp, int_or_string_value(ru.max_unavailable), "must be greater than 0"))
        elif n is not None and n > 100 and ru.max_unavailable.WhichOneof("value") == "str_val":
            errs.append(invalid(mp, ru.max_unavailable.str_val, "must not be greater than 100%"))
    return errs


def _claim_templates(templates, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, pvc in enumerate(templates):
        p = f"{path}[{i}]"
        if not pvc.metadata.name:
            errs.append(required(f"{p}.metadata.name", "name or generateName is required"))
        else:
            errs += each(f"{p}.metadata.name", pvc.metadata.name, is_dns1123_subdomain(pvc.metadata.name))
        errs += validate_template_meta(pvc.metadata, f"{p}.metadata")
        errs += [FieldError(e.type, f"{p}.{e.field}", e.value, e.detail)
                 for e in validate_persistent_volume_claim(pvc)]
    return errs


def _with_claim_volumes(spec):
    """The spec whose template also has a volume per claim template, as the controller's pods do, so
    the containers' volumeMounts of claims resolve (Kubernetes' TODO: "the union of the given volumes
    and volumeClaims match volume mounts")."""
    out = type(spec)()
    out.CopyFrom(spec)
    if not spec.HasField("template"):
        return out
    have = {v.name for v in out.template.spec.volumes}
    for t in spec.volume_claim_templates:
        if t.metadata.name and t.metadata.name not in have:
            out.template.spec.volumes.add(name=t.metadata.name).persistent_volume_claim.claim_name = t.metadata.name
    return out


def validate_stateful_set(sts) -> list[FieldError]:
    spec = sts.spec
    errs: list[FieldError] = []
    if spec.service_name:
        errs += each("spec.serviceName", spec.service_name, is_dns1035_label(spec.service_name))  # ValidateServiceName
    if not spec.pod_management_policy:
        errs.append(required("spec.podManagementPolicy", ""))
    elif spec.pod_management_policy not in POLICIES:
        errs.append(not_supported("spec.podManagementPolicy", spec.pod_management_policy, POLICIES))
    errs += _strategy(spec.update_strategy, "spec.updateStrategy")
    if spec.HasField("revision_history_limit"):
        errs += non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    policy, pp = spec.persistent_volume_claim_retention_policy, "spec.persistentVolumeClaimRetentionPolicy"
    for f, j in (("when_deleted", "whenDeleted"), ("when_scaled", "whenScaled")):
        if getattr(policy, f) not in RETENTION:
            errs.append(not_supported(f"{pp}.{j}", getattr(policy, f), RETENTION))
    if spec.HasField("replicas"):
        errs += non_negative("spec.replicas", spec.replicas)
    if spec.HasField("ordinals"):
        errs += non_negative("spec.ordinals.start", spec.ordinals.start)
    errs += non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    errs += [forbidden(_ADS, "activeDeadlineSeconds in StatefulSet is not Supported") if e.field == _ADS else e
             for e in _selector_and_template(_with_claim_volumes(spec), "spec", "statefulset")]
    return errs + _claim_templates(spec.volume_claim_templates, "spec.volumeClaimTemplates")


def validate_stateful_set_update(new, old) -> list[FieldError]:
    """Only the fields Kubernetes lets change may change (the rest of the spec is frozen)."""
    a, b = type(new.spec)(), type(old.spec)()
    a.CopyFrom(new.spec)
    b.CopyFrom(old.spec)
    for f in _MUTABLE:
        a.ClearField(f)
        b.ClearField(f)
    return [] if a == b else [forbidden("spec", SPEC_UPDATE_MSG)]


def validate_stateful_set_status(st) -> list[FieldError]:
    errs: list[FieldError] = []
    fields = (("replicas", "replicas"), ("ready_replicas", "readyReplicas"),
              ("current_replicas", "currentReplicas"), ("updated_replicas", "updatedReplicas"),
              ("available_replicas", "availableReplicas"), ("observed_generation", "observedGeneration"))
    for f, j in fields:
        errs += non_negative(f"status.{j}", getattr(st, f))
    if st.HasField("collision_count"):
        errs += non_negative("status.collisionCount", st.collision_count)
    for f, j in fields[1:5]:
        if getattr(st, f) > st.replicas:
            errs.append(invalid(f"status.{j}", getattr(st, f), "cannot be greater than status.replicas"))
    if st.available_replicas > st.ready_replicas:
        errs.append(invalid("status.availableReplicas", st.available_replicas, "cannot be greater than readyReplicas"))
    return errs
