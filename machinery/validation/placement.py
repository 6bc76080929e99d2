"""Pod placement fields and PriorityClass, after Kubernetes' validation.go:
topologySpreadConstraints (validateTopologySpreadConstraints), pod affinity
and anti-affinity terms (validatePodAffinityTerm, validateWeightedPodAffinityTerms),
priorityClassName / preemptionPolicy (ValidatePreemptionPolicy), and the
scheduling.k8s.io PriorityClass kind (ValidatePriorityClass,
ValidatePriorityClassUpdate) with its reserved `system-` names.
"""
from __future__ import annotations

from machinery.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from machinery.validation.common import (each, immutable, is_dns1123_label, is_dns1123_subdomain,
                                         is_qualified_name, validate_selector_proto)

DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"
POLICIES = ("Honor", "Ignore")
PREEMPTION_POLICIES = ("PreemptLowerPriority", "Never")
NOT_POSITIVE = "must be greater than zero"
HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
SYSTEM_PREFIX = "system-"
# name -> (value, globalDefault): scheduling.SystemPriorityClasses()
SYSTEM_CLASSES = {"system-node-critical": SYSTEM_CRITICAL_PRIORITY + 1000,
                  "system-cluster-critical": SYSTEM_CRITICAL_PRIORITY}
SYSTEM_DESCRIPTIONS = {
    "system-node-critical": "Used for system critical pods that must not be moved from their current node.",
    "system-cluster-critical": "Used for system critical pods that must run in the cluster, "
                               "but can be moved to another node if necessary.",
}


def _topology_key(key: str, path: str) -> list[FieldError]:
    if not key:
        return [required(path, "can not be empty")]
    return each(path, key, is_qualified_name(key))


def validate_spread_constraints(constraints, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        p = f"{path}[{i}]"
        if c.max_skew <= 0:
            errs.append(invalid(f"{p}.maxSkew", c.max_skew, NOT_POSITIVE))
        errs += _topology_key(c.topology_key, f"{p}.topologyKey")
        if c.when_unsatisfiable not in (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY):
            errs.append(not_supported(f"{p}.whenUnsatisfiable", c.when_unsatisfiable,
                                      (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY)))
        if c.HasField("min_domains"):
            if c.min_domains <= 0:
                errs.append(invalid(f"{p}.minDomains", c.min_domains, NOT_POSITIVE))
            if c.when_unsatisfiable != DO_NOT_SCHEDULE:
                errs.append(invalid(f"{p}.minDomains", c.min_domains,
                                    f"can only use minDomains if whenUnsatisfiable={DO_NOT_SCHEDULE}, "
                                    f"not {c.when_unsatisfiable}"))
        pair = (c.topology_key, c.when_unsatisfiable)
        if pair in seen:
            errs.append(duplicate(f"{p}.{{topologyKey, whenUnsatisfiable}}", "{%s, %s}" % pair))
        seen.add(pair)
        for f, j in (("node_affinity_policy", "nodeAffinityPolicy"), ("node_taints_policy", "nodeTaintsPolicy")):
            if c.HasField(f) and getattr(c, f) not in POLICIES:
                errs.append(not_supported(f"{p}.{j}", getattr(c, f), POLICIES))
        if c.HasField("label_selector"):
            errs += validate_selector_proto(c.label_selector, f"{p}.labelSelector")
        selector_keys = set(c.label_selector.match_labels) | {e.key for e in c.label_selector.match_expressions}
        for j, key in enumerate(c.match_label_keys):
            kp = f"{p}.matchLabelKeys[{j}]"
            errs += each(kp, key, is_qualified_name(key))
            if not c.HasField("label_selector"):
                errs.append(forbidden(kp, "must not be specified when labelSelector is not set"))
            elif key in selector_keys:
                errs.append(invalid(kp, key, "exists in both matchLabelKeys and labelSelector"))
    return errs


def _affinity_term(term, path: str) -> list[FieldError]:
    errs = validate_selector_proto(term.label_selector, f"{path}.labelSelector")
    errs += validate_selector_proto(term.namespace_selector, f"{path}.namespaceSelector")
    for j, ns in enumerate(term.namespaces):
        errs += each(f"{path}.namespaces[{j}]", ns, is_dns1123_label(ns))
    return errs + _topology_key(term.topology_key, f"{path}.topologyKey")


def _pod_affinity(aff, path: str) -> list[FieldError]:
    errs = []
    rp = f"{path}.requiredDuringSchedulingIgnoredDuringExecution"
    for i, term in enumerate(aff.required_during_scheduling_ignored_during_execution):
        errs += _affinity_term(term, f"{rp}[{i}]")
    pp = f"{path}.preferredDuringSchedulingIgnoredDuringExecution"
    for i, w in enumerate(aff.preferred_during_scheduling_ignored_during_execution):
        if not 1 <= w.weight <= 100:
            errs.append(invalid(f"{pp}[{i}].weight", w.weight, "must be in the range 1-100"))
        errs += _affinity_term(w.pod_affinity_term, f"{pp}[{i}].podAffinityTerm")
    return errs


def validate_pod_placement(spec, path: str) -> list[FieldError]:
    """The pod spec's placement fields: pod (anti-)affinity, spread
    constraints, priorityClassName and preemptionPolicy."""
    errs = []
    aff = spec.affinity
    if aff.HasField("pod_affinity"):
        errs += _pod_affinity(aff.pod_affinity, f"{path}.affinity.podAffinity")
    if aff.HasField("pod_anti_affinity"):
        errs += _pod_affinity(aff.pod_anti_affinity, f"{path}.affinity.podAntiAffinity")
    errs += validate_spread_constraints(spec.topology_spread_constraints, f"{path}.topologySpreadConstraints")
    if spec.priority_class_name:
        errs += each(f"{path}.priorityClassName", spec.priority_class_name,
                     is_dns1123_subdomain(spec.priority_class_name))
    if spec.HasField("preemption_policy") and spec.preemption_policy not in PREEMPTION_POLICIES:
        errs.append(not_supported(f"{path}.preemptionPolicy", spec.preemption_policy, PREEMPTION_POLICIES))
    return errs


# ------------------------------------------------------------ PriorityClass

def known_system_class(name: str, value: int, global_default: bool) -> str:
    """"" when (name, value, globalDefault) is a system class, else why not
    (scheduling.IsKnownSystemPriorityClass)."""
    want = SYSTEM_CLASSES.get(name)
    if want is None:
        return f"{name} is not a known system priority class"
    if value != want:
        return f"value of {name} PriorityClass must be {want}"
    if global_default:
        return f"globalDefault of {name} PriorityClass must be false"
    return ""


def validate_priority_class(pc) -> list[FieldError]:
    errs = []
    name = pc.metadata.name
    if name.startswith(SYSTEM_PREFIX):
        why = known_system_class(name, pc.value, pc.global_default)
        if why:
            errs.append(forbidden("metadata.name", f"priority class names with '{SYSTEM_PREFIX}' prefix are "
                                                   f"reserved for system use only. error: {why}"))
    elif pc.value > HIGHEST_USER_DEFINABLE_PRIORITY:
        errs.append(forbidden("value", "maximum allowed value of a user defined priority is "
                                       f"{HIGHEST_USER_DEFINABLE_PRIORITY}"))
    if pc.HasField("preemption_policy") and pc.preemption_policy not in PREEMPTION_POLICIES:
        errs.append(not_supported("preemptionPolicy", pc.preemption_policy, PREEMPTION_POLICIES))
    return errs


def validate_priority_class_update(new, old) -> list[FieldError]:
    errs = []
    if new.value != old.value:
        errs.append(forbidden("value", "may not be changed in an update."))
    errs += immutable("preemptionPolicy", new.preemption_policy, old.preemption_policy)
    return errs
