"""PodDisruptionBudget validation (pkg/apis/policy/validation): exactly one
of minAvailable and maxUnavailable, each a non-negative integer or a
percentage of at most 100%; a valid selector; a known
unhealthyPodEvictionPolicy."""
from __future__ import annotations

from machinery.errors import FieldError, invalid, not_supported
from machinery.validation.common import (each, is_percent, non_negative,
                                         validate_selector_proto)

EVICTION_POLICIES = ("IfHealthyBudget", "AlwaysAllow")


def _int_or_percent(v, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent + IsNotMoreThan100Percent."""
    if v.WhichOneof("value") == "str_val":
        errs = each(path, v.str_val, is_percent(v.str_val))
        if not errs and int(v.str_val[:-1]) > 100:
            errs.append(invalid(path, v.str_val, "must not be greater than 100%"))
        return errs
    return non_negative(path, v.int_val)


def validate_pdb(pdb) -> list[FieldError]:
    spec, errs = pdb.spec, []
    has_min = spec.min_available.WhichOneof("value") is not None
    has_max = spec.max_unavailable.WhichOneof("value") is not None
    if has_min and has_max:
        errs.append(invalid("spec", "", "minAvailable and maxUnavailable cannot be both set"))
    if has_min:
        errs += _int_or_percent(spec.min_available, "spec.minAvailable")
    if has_max:
        errs += _int_or_percent(spec.max_unavailable, "spec.maxUnavailable")
    if spec.HasField("selector"):
        errs += validate_selector_proto(spec.selector, "spec.selector")
    if spec.HasField("unhealthy_pod_eviction_policy") and \
            spec.unhealthy_pod_eviction_policy not in EVICTION_POLICIES:
        errs.append(not_supported("spec.unhealthyPodEvictionPolicy", spec.unhealthy_pod_eviction_policy,
                                  EVICTION_POLICIES))
    return errs


def validate_pdb_status(st) -> list[FieldError]:
    errs: list[FieldError] = []
    for f, j in (("disruptions_allowed", "disruptionsAllowed"), ("current_healthy", "currentHealthy"),
                 ("desired_healthy", "desiredHealthy"), ("expected_pods", "expectedPods")):
        errs += non_negative(f"status.{j}", getattr(st, f))
    return errs

