"""rbac.authorization.k8s.io/v1 validation, rule for rule and message for
message as Kubernetes' pkg/apis/rbac/validation: names are path segments
(not `.`/`..`, no `/` or `%`), a rule has verbs and either resources (with
API groups) or non-resource URLs (ClusterRoles only), a binding refers to a
Role or ClusterRole of this API group and its subjects are Users, Groups or
ServiceAccounts; roleRef never changes.
"""
from __future__ import annotations

from machinery import kinds
from machinery.errors import FieldError, invalid, not_supported, required
from machinery.validation.common import each, is_dns1123_subdomain, validate_selector_proto


def path_segment_name(name: str) -> list[str]:
    """apimachinery's path.IsValidPathSegmentName."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def _rule(rule, namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not rule.verbs:
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    if rule.non_resource_urls:
        urls = list(rule.non_resource_urls)
        if namespaced:
            errs.append(invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs"))
        if rule.api_groups or rule.resources or rule.resource_names:
            errs.append(invalid(f"{path}.nonResourceURLs", urls,
                                "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not rule.api_groups:
        errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not rule.resources:
        errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    if rule.resource_names and len(rule.resources) > 1:
        errs.append(required(f"{path}.resourceNames", "resource names cannot apply to multiple resources"))
    return errs


def _rules(role, namespaced: bool) -> list[FieldError]:
    return [e for i, r in enumerate(role.rules) for e in _rule(r, namespaced, f"rules[{i}]")]


def validate_role(role) -> list[FieldError]:
    return _rules(role, True)


def validate_cluster_role(role) -> list[FieldError]:
    errs = _rules(role, False)
    for i, sel in enumerate(role.aggregation_rule.cluster_role_selectors):
        errs += validate_selector_proto(sel, f"aggregationRule.clusterRoleSelectors[{i}]")
    return errs


def _subject(s, namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not s.name:
        errs.append(required(f"{path}.name"))
    if s.kind == "ServiceAccount":
        if s.name:
            errs += each(f"{path}.name", s.name, is_dns1123_subdomain(s.name))
        if s.api_group:
            errs.append(not_supported(f"{path}.apiGroup", s.api_group, [""]))
        if not namespaced and not s.namespace:
            errs.append(required(f"{path}.namespace"))
    elif s.kind in ("User", "Group"):
        if not s.name:
            errs.append(invalid(f"{path}.name", s.name, f"{s.kind.lower()} name cannot be empty"))
        if s.api_group != kinds.RBAC_GROUP:
            errs.append(not_supported(f"{path}.apiGroup", s.api_group, [kinds.RBAC_GROUP]))
    else:
        errs.append(not_supported(f"{path}.kind", s.kind, ["ServiceAccount", "User", "Group"]))
    return errs


def _binding(b, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    ref = b.role_ref
    if ref.api_group != kinds.RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.api_group, [kinds.RBAC_GROUP]))
    allowed = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.kind not in allowed:
        errs.append(not_supported("roleRef.kind", ref.kind, allowed))
    if not ref.name:
        errs.append(required("roleRef.name"))
    else:
        errs += each("roleRef.name", ref.name, path_segment_name(ref.name))
    for i, s in enumerate(b.subjects):
        errs += _subject(s, namespaced, f"subjects[{i}]")
    return errs


def validate_role_binding(b) -> list[FieldError]:
    return _binding(b, True)


def validate_cluster_role_binding(b) -> list[FieldError]:
    return _binding(b, False)


def validate_binding_update(new, old) -> list[FieldError]:
    if new.role_ref != old.role_ref:
        ref = new.role_ref
        value = {"apiGroup": ref.api_group, "kind": ref.kind, "name": ref.name}
        return [invalid("roleRef", value, "cannot change roleRef")]
    return []
