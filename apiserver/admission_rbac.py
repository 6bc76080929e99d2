"""RBAC's escalation check as a validating admission step (Kubernetes does it
in the RBAC registry): creating or updating a Role, ClusterRole or binding
is refused with 403 unless the requester already holds what it grants, or
may `escalate` (roles) / `bind` (bindings) — see apiserver/auth/escalation.py.

The Store carries the apiserver's Authorization (`store.authorization`,
set by apiserver/auth/setup.py); a Store without one (unit tests, tools)
skips the check.
"""
from __future__ import annotations

from apiserver.admission import CREATE, UPDATE, Plugin, Request
from apiserver.auth import escalation
from apiserver.auth.authz import Attributes
from machinery import errors, kinds

ROLES = {"Role": "roles", "ClusterRole": "clusterroles"}


def _forbidden(req: Request, why: str) -> errors.Forbidden:
    name = req.obj.metadata.name
    return errors.Forbidden(f'{req.info.resource} "{name}" is forbidden: {why}', kind=req.info.plural, name=name,
                            group=req.info.group)


class RBACEscalation(Plugin):
    name = "RBACEscalation"

    async def validate(self, req: Request) -> list[str]:
        authz = getattr(req.store, "authorization", None)
        kind = req.info.kind
        if (authz is None or req.operation not in (CREATE, UPDATE) or req.subresource
                or kind not in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
                or escalation.is_master(req.user)):
            return []
        obj, ns = req.obj, req.obj.metadata.namespace if req.info.namespaced else ""
        if kind in ROLES:
            may = Attributes(req.user, "escalate", namespace=ns, api_group=kinds.RBAC_GROUP,
                             resource=ROLES[kind], name=obj.metadata.name)
            wanted = list(obj.rules)
            if kind == "ClusterRole" and obj.aggregation_rule.cluster_role_selectors:
                wanted = escalation.FULL_AUTHORITY
        else:
            ref = obj.role_ref
            may = Attributes(req.user, "bind", namespace=ns, api_group=kinds.RBAC_GROUP,
                             resource=ROLES.get(ref.kind, ref.kind.lower()), name=ref.name)
            try:
                wanted = list(authz.rbac.role_rules(ref, ns))
            except LookupError as exc:
                raise _forbidden(req, str(exc)) from None
        if (await authz.authorizer.authorize(may)).allowed:
            return []
        granted = authz.rbac.rules_for(req.user, ns)
        missing = escalation.uncovered(granted.rules, wanted)
        if missing:
            raise _forbidden(req, escalation.escalation_message(req.user, missing, granted.errors))
        return []
