"""The RBAC authorizer: Kubernetes' evaluation rules over Roles,
ClusterRoles and their bindings (plugin/pkg/auth/authorizer/rbac).

A request is allowed when some rule granted to the user allows it; RBAC
never denies, it only has no opinion (the chain then refuses). The rules
granted to a user in a namespace are those of every ClusterRoleBinding and,
for a namespaced request, of every RoleBinding in that namespace whose
subjects name the user: a User by name, a Group the user is in, a
ServiceAccount by `system:serviceaccount:NS:NAME` (the subject's namespace
defaults to the RoleBinding's). A RoleBinding to a ClusterRole grants that
role's rules only in the binding's namespace.

A rule allows a resource request when verb, API group, resource and name
match: `*` matches any verb, group or resource; a resource is matched as
`resource/subresource` (`pods/log`), `*/scale` matches the scale of every
resource; an empty resourceNames matches every name. A non-resource rule
matches the path exactly, or by prefix when it ends in `*`.

Roles and bindings are read from ObjectIndexes on the watch cache
(apiserver/auth/index.py), never from etcd on a request's path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from apiserver.auth.authz import ALLOW, NO_OPINION, Attributes, Authorizer, Decision
from apiserver.auth.index import ObjectIndex
from apiserver.auth.user import UserInfo

ALL = "*"
SYNC_WAIT = 30.0                    # seconds a request waits for the indexes' first list after a start
SA_PREFIX = "system:serviceaccount:"


def service_account_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def verb_matches(rule, verb: str) -> bool:
    verbs = rule.verbs
    return verb in verbs or ALL in verbs


def api_group_matches(rule, group: str) -> bool:
    groups = rule.api_groups
    return group in groups or ALL in groups


def resource_matches(rule, combined: str, subresource: str) -> bool:
    for r in rule.resources:
        if r == ALL or r == combined:
            return True
        if subresource and len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def resource_name_matches(rule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def non_resource_url_matches(rule, path: str) -> bool:
    for u in rule.non_resource_urls:
        if u == ALL or u == path:
            return True
        if u.endswith("*") and path.startswith(u.rstrip("*")):
            return True
    return False


def rule_allows(a: Attributes, rule) -> bool:
    if a.resource_request:
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        return (verb_matches(rule, a.verb) and api_group_matches(rule, a.api_group)
                and resource_matches(rule, combined, a.subresource) and resource_name_matches(rule, a.name))
    return verb_matches(rule, a.verb) and non_resource_url_matches(rule, a.path)


def applies_to(user: UserInfo, subject, binding_namespace: str) -> bool:
    if subject.kind == "User":
        return user.name == subject.name
    if subject.kind == "Group":
        return user.in_group(subject.name)
    if subject.kind == "ServiceAccount":
        ns = subject.namespace or binding_namespace
        return bool(ns) and user.name == service_account_user(ns, subject.name)
    return False


@dataclass
class Granted:
    """Where a rule came from (the reason Kubernetes gives for an ALLOW)."""
    rules: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class RBAC(Authorizer):
    def __init__(self, roles: ObjectIndex | None = None, cluster_roles: ObjectIndex | None = None,
                 role_bindings: ObjectIndex | None = None, cluster_role_bindings: ObjectIndex | None = None):
        self.roles = roles or ObjectIndex("Role")
        self.cluster_roles = cluster_roles or ObjectIndex("ClusterRole")
        self.role_bindings = role_bindings or ObjectIndex("RoleBinding")
        self.cluster_role_bindings = cluster_role_bindings or ObjectIndex("ClusterRoleBinding")

    def attach(self, cache) -> "RBAC":
        for index in (self.roles, self.cluster_roles, self.role_bindings, self.cluster_role_bindings):
            index.attach(cache[index.info.kind])
        return self

    @property
    def ready(self) -> bool:
        return all(i.ready for i in (self.roles, self.cluster_roles, self.role_bindings,
                                     self.cluster_role_bindings))

    # ------------------------------------------------------------ rules
    def role_rules(self, ref, namespace: str):
        """The rules of the Role or ClusterRole `ref` names (LookupError when missing)."""
        if ref.kind == "ClusterRole":
            role = self.cluster_roles.get("", ref.name)
        elif ref.kind == "Role" and namespace:
            role = self.roles.get(namespace, ref.name)
        else:
            role = None
        if role is None:
            where = f" in namespace {namespace}" if ref.kind == "Role" else ""
            raise LookupError(f'{ref.kind.lower()}.rbac.authorization.k8s.io "{ref.name}" not found{where}')
        return role.rules

    def visit(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, object]]:
        """(source, rule) for every rule granted to `user` in `namespace`
        ("" = cluster-wide only); a binding to a missing role yields
        ("error", message)."""
        for b in self.cluster_role_bindings.all():
            if any(applies_to(user, s, "") for s in b.subjects):
                try:
                    rules = self.role_rules(b.role_ref, "")
                except LookupError as exc:
                    yield "error", str(exc)
                    continue
                for r in rules:
                    yield f'ClusterRoleBinding "{b.metadata.name}" of ClusterRole "{b.role_ref.name}"', r
        if not namespace:
            return
        for b in self.role_bindings.in_namespace(namespace):
            if any(applies_to(user, s, namespace) for s in b.subjects):
                try:
                    rules = self.role_rules(b.role_ref, namespace)
                except LookupError as exc:
                    yield "error", str(exc)
                    continue
                for r in rules:
                    yield (f'RoleBinding "{b.metadata.name}/{namespace}" of {b.role_ref.kind} '
                           f'"{b.role_ref.name}"', r)

    def rules_for(self, user: UserInfo, namespace: str) -> Granted:
        g = Granted()
        for source, rule in self.visit(user, namespace):
            (g.errors if source == "error" else g.rules).append(rule)
        return g

    async def authorize(self, a: Attributes) -> Decision:
        if not self.ready:                  # just started: the roles are on their way from etcd
            for index in (self.roles, self.cluster_roles, self.role_bindings, self.cluster_role_bindings):
                await index.wait_synced(SYNC_WAIT)
        for source, rule in self.visit(a.user, a.namespace):
            if source != "error" and rule_allows(a, rule):
                return Decision(ALLOW, f"RBAC: allowed by {source}")
        return Decision(NO_OPINION)
