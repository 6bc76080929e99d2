"""ReplicaSet, Deployment, DaemonSet and ControllerRevision validation
(pkg/apis/apps/validation)."""
from __future__ import annotations

from machinery import selectors
from machinery.errors import FieldError, forbidden, invalid, not_supported, required
from machinery.validation.common import (IMMUTABLE_MSG, each, int_or_string_value, is_percent,
                                         non_negative, validate_selector_proto)
from machinery.validation.meta import validate_template_meta
from machinery.validation.pod import validate_pod_spec

STRATEGIES = ("Recreate", "RollingUpdate")
DS_STRATEGIES = ("RollingUpdate", "OnDelete")


def _selector_and_template(spec, path: str, what: str = "deployment") -> list[FieldError]:
    """The rules ReplicaSet, Deployment and DaemonSet share: selector, template, labels."""
    errs: list[FieldError] = []
    sel = None
    if not spec.HasField("selector"):
        errs.append(required(f"{path}.selector", ""))
    else:
        serrs = validate_selector_proto(spec.selector, f"{path}.selector")
        errs += serrs
        if not serrs:
            sel = selectors.from_proto(spec.selector)
            if sel.empty:
                errs.append(invalid(f"{path}.selector", selectors.proto_to_string(spec.selector),
                                    f"empty selector is invalid for {what}"))
                sel = None
    if not spec.HasField("template"):
        errs.append(required(f"{path}.template", ""))
        return errs
    tp = f"{path}.template"
    tmpl = spec.template
    errs += validate_template_meta(tmpl.metadata, f"{tp}.metadata")
    if sel is not None and not sel.matches(tmpl.metadata.labels):
        errs.append(invalid(f"{tp}.metadata.labels", dict(tmpl.metadata.labels),
                            "`selector` does not match template `labels`"))
    errs += validate_pod_spec(tmpl.spec, f"{tp}.spec")
    if tmpl.spec.restart_policy and tmpl.spec.restart_policy != "Always":
        errs.append(not_supported(f"{tp}.spec.restartPolicy", tmpl.spec.restart_policy, ("Always",)))
    if tmpl.spec.HasField("active_deadline_seconds"):
        errs.append(invalid(f"{tp}.spec.activeDeadlineSeconds", tmpl.spec.active_deadline_seconds,
                            "activeDeadlineSeconds must be nil for daemon sets") if what == "daemonset"
                    else forbidden(f"{tp}.spec.activeDeadlineSeconds",
                                   "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def validate_replica_set(rs) -> list[FieldError]:
    spec = rs.spec
    errs = []
    if spec.HasField("replicas"):
        errs += non_negative("spec.replicas", spec.replicas)
    errs += non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    return errs + _selector_and_template(spec, "spec")


def _int_or_percent(v, path: str) -> list[FieldError]:
    if v.WhichOneof("value") == "str_val":
        return each(path, v.str_val, is_percent(v.str_val))
    return non_negative(path, v.int_val)


def _as_number(v) -> int | None:
    """The int or percent number of an IntOrString, None when malformed."""
    raw = int_or_string_value(v)
    if isinstance(raw, int):
        return raw
    return int(raw[:-1]) if raw.endswith("%") and raw[:-1].isdigit() else None


def validate_strategy(strategy, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    t = strategy.type
    if not t:
        errs.append(required(f"{path}.type", ""))
    elif t not in STRATEGIES:
        errs.append(not_supported(f"{path}.type", t, STRATEGIES))
    has_ru = strategy.HasField("rolling_update")
    rp = f"{path}.rollingUpdate"
    if t == "Recreate" and has_ru:
        errs.append(forbidden(rp, "may not be specified when strategy `type` is 'Recreate'"))
    if t == "RollingUpdate" and not has_ru:
        errs.append(required(rp, "this should be defaulted and never be nil"))
    if t == "RollingUpdate" and has_ru:
        ru = strategy.rolling_update
        errs += _int_or_percent(ru.max_unavailable, f"{rp}.maxUnavailable")
        errs += _int_or_percent(ru.max_surge, f"{rp}.maxSurge")
        unavailable, surge = _as_number(ru.max_unavailable), _as_number(ru.max_surge)
        if ru.max_unavailable.WhichOneof("value") == "str_val" and unavailable is not None \
                and unavailable > 100:
            errs.append(invalid(f"{rp}.maxUnavailable", ru.max_unavailable.str_val,
                                "must not be greater than 100%"))
        if unavailable == 0 and surge == 0:
            errs.append(invalid(f"{rp}.maxUnavailable", int_or_string_value(ru.max_unavailable),
                                "may not be 0 when `maxSurge` is 0"))
    return errs


def validate_deployment(d) -> list[FieldError]:
    spec = d.spec
    errs: list[FieldError] = []
    if spec.HasField("replicas"):
        errs += non_negative("spec.replicas", spec.replicas)
    errs += _selector_and_template(spec, "spec")
    errs += validate_strategy(spec.strategy, "spec.strategy")
    errs += non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        errs += non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    if spec.HasField("progress_deadline_seconds"):
        pds = spec.progress_deadline_seconds
        errs += non_negative("spec.progressDeadlineSeconds", pds)
        if pds <= spec.min_ready_seconds:
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs


def validate_selector_update(new, old) -> list[FieldError]:
    """apps/v1: the selector is immutable once created."""
    same = (new.spec.HasField("selector") == old.spec.HasField("selector")
            and new.spec.selector == old.spec.selector)
    if same:
        return []
    return [invalid("spec.selector", selectors.proto_to_string(new.spec.selector), IMMUTABLE_MSG)]


def validate_replicas_status(st, path: str = "status", *, deployment: bool) -> list[FieldError]:
    errs = []
    fields = [("replicas", "replicas"), ("ready_replicas", "readyReplicas"),
              ("available_replicas", "availableReplicas"), ("observed_generation", "observedGeneration")]
    fields += ([("updated_replicas", "updatedReplicas"), ("unavailable_replicas", "unavailableReplicas")]
               if deployment else [("fully_labeled_replicas", "fullyLabeledReplicas")])
    for f, j in fields:
        errs += non_negative(f"{path}.{j}", getattr(st, f))
    others = ["ready_replicas", "available_replicas"]
    others += ["updated_replicas"] if deployment else ["fully_labeled_replicas"]
    names = dict(fields)
    for f in others:
        if getattr(st, f) > st.replicas:
            errs.append(invalid(f"{path}.{names[f]}", getattr(st, f), "cannot be greater than status.replicas"))
    if st.available_replicas > st.ready_replicas:
        errs.append(invalid(f"{path}.availableReplicas", st.available_replicas,
                            "cannot be greater than readyReplicas"))
    if deployment and st.HasField("collision_count"):
        errs += non_negative(f"{path}.collisionCount", st.collision_count)
    return errs


def _daemon_rolling_update(ru, path: str) -> list[FieldError]:
    """ValidateRollingUpdateDaemonSet: exactly one of maxUnavailable and maxSurge non-zero."""
    errs: list[FieldError] = []
    nonzero = {}
    for f, j in (("max_unavailable", "maxUnavailable"), ("max_surge", "maxSurge")):
        v = getattr(ru, f)
        nonzero[f] = v.WhichOneof("value") is not None and _as_number(v) != 0
        if nonzero[f]:
            errs += _int_or_percent(v, f"{path}.{j}")
            n = _as_number(v)
            if v.WhichOneof("value") == "str_val" and n is not None and n > 100:
                errs.append(invalid(f"{path}.{j}", v.str_val, "must not be greater than 100%"))
    if nonzero["max_unavailable"] and nonzero["max_surge"]:
        errs.append(invalid(f"{path}.maxSurge", int_or_string_value(ru.max_surge),
                            "may not be set when maxUnavailable is non-zero"))
    elif not nonzero["max_unavailable"] and not nonzero["max_surge"]:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def validate_daemon_set(ds) -> list[FieldError]:
    spec = ds.spec
    errs = _selector_and_template(spec, "spec", "daemonset")
    errs += non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        errs += non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    us, up = spec.update_strategy, "spec.updateStrategy"
    if us.type not in DS_STRATEGIES:
        errs.append(not_supported(f"{up}.type", us.type, DS_STRATEGIES) if us.type else required(f"{up}.type", ""))
    if us.type == "RollingUpdate":
        errs += _daemon_rolling_update(us.rolling_update, f"{up}.rollingUpdate")
    return errs


def validate_daemon_set_status(st) -> list[FieldError]:
    errs: list[FieldError] = []
    for f, j in (("current_number_scheduled", "currentNumberScheduled"), ("number_misscheduled", "numberMisscheduled"),
                 ("desired_number_scheduled", "desiredNumberScheduled"), ("number_ready", "numberReady"),
                 ("observed_generation", "observedGeneration"), ("updated_number_scheduled", "updatedNumberScheduled"),
                 ("number_available", "numberAvailable"), ("number_unavailable", "numberUnavailable")):
        errs += non_negative(f"status.{j}", getattr(st, f))
    return errs


def validate_controller_revision(cr) -> list[FieldError]:
    errs = non_negative("revision", cr.revision)
    if not cr.HasField("data"):
        errs.append(required("data", "data is mandatory"))
    return errs


def validate_controller_revision_update(new, old) -> list[FieldError]:
    return [] if new.data == old.data else [invalid("data", "", IMMUTABLE_MSG)]
