"""Scheduling-related pod fields: tolerations and node affinity
(validateTolerations, ValidateNodeSelectorRequirement, validateNodeAffinity)."""
from __future__ import annotations

import re

from machinery.errors import FieldError, forbidden, invalid, not_supported, required
from machinery.validation.common import each, is_label_value, is_qualified_name

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
NODE_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def validate_tolerations(tols, path: str) -> list[FieldError]:
    errs = []
    for i, t in enumerate(tols):
        p = f"{path}[{i}]"
        if t.key:
            errs += each(f"{p}.key", t.key, is_qualified_name(t.key))
        elif t.operator != "Exists":
            errs.append(invalid(f"{p}.operator", t.operator,
                                "operator must be Exists when `key` is empty, which means "
                                "\"match all values and all keys\""))
        if t.HasField("toleration_seconds") and t.effect != "NoExecute":
            errs.append(invalid(f"{p}.effect", t.effect,
                                "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if t.operator in ("", "Equal"):
            errs += each(f"{p}.value", t.value, is_label_value(t.value))
        elif t.operator == "Exists":
            if t.value:
                errs.append(invalid(f"{p}.operator", t.value,
                                    "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{p}.operator", t.operator, ("Equal", "Exists")))
        if t.effect and t.effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", t.effect, TAINT_EFFECTS))
    return errs


def validate_node_selector_requirement(r, path: str, field_selector=False) -> list[FieldError]:
    errs = []
    op, n = r.operator, len(r.values)
    if op in ("In", "NotIn"):
        if n == 0:
            errs.append(required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif field_selector and n != 1:
            errs.append(required(f"{path}.values", "must be only one value when `operator` is 'In' or "
                                                   "'NotIn' for node field selector"))
    elif op in ("Exists", "DoesNotExist") and not field_selector:
        if n:
            errs.append(forbidden(f"{path}.values",
                                  "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    elif op in ("Gt", "Lt") and not field_selector:
        if n != 1:
            errs.append(required(f"{path}.values",
                                 "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        elif not re.fullmatch(r"-?[0-9]+", r.values[0]):
            errs.append(invalid(f"{path}.values[0]", r.values[0], "must be an integer"))
    else:
        errs.append(invalid(f"{path}.operator", op, "not a valid selector operator"))
    if field_selector:
        if r.key != "metadata.name":
            errs.append(not_supported(f"{path}.key", r.key, ("metadata.name",)))
    else:
        errs += each(f"{path}.key", r.key, is_qualified_name(r.key))
    return errs


def _term(term, path: str) -> list[FieldError]:
    errs = []
    for j, r in enumerate(term.match_expressions):
        errs += validate_node_selector_requirement(r, f"{path}.matchExpressions[{j}]")
    for j, r in enumerate(term.match_fields):
        errs += validate_node_selector_requirement(r, f"{path}.matchFields[{j}]", field_selector=True)
    return errs


def validate_affinity(aff, path: str) -> list[FieldError]:
    if not aff.HasField("node_affinity"):
        return []
    na, p = aff.node_affinity, f"{path}.nodeAffinity"
    errs = []
    if na.HasField("required_during_scheduling_ignored_during_execution"):
        rp = f"{p}.requiredDuringSchedulingIgnoredDuringExecution"
        terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
        if not terms:
            errs.append(required(f"{rp}.nodeSelectorTerms", "must have at least one node selector term"))
        for i, term in enumerate(terms):
            errs += _term(term, f"{rp}.nodeSelectorTerms[{i}]")
    for i, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution):
        pp = f"{p}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        if not 1 <= pref.weight <= 100:
            errs.append(invalid(f"{pp}.weight", pref.weight, "must be in the range 1-100"))
        errs += _term(pref.preference, f"{pp}.preference")
    return errs
