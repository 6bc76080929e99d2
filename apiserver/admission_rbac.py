"""RBAC's escalation check as a validating admission step (Kubernetes does it
in the RBAC registry): creating or updating a Role, ClusterRole or binding
is refused with 403 unless the requester already holds what it grants, or
may `escalate` (roles) / `bind` (bindings) — see apiserver/auth/escalation.py.
An update that only changes ownerReferences or finalizers (the garbage
collector's) is not checked, as in Kubernetes.

The Store carries the apiserver's Authorization (`store.authorization`,
set by apiserver/auth/setup.py); a Store without one (unit tests, tools)
skips the check.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apiserver.admission import Request

CREATE, UPDATE = "CREATE", "UPDATE"      # apiserver.admission's operations (it imports this module)
from apiserver.auth import escalation
from apiserver.auth.authz import Attributes
from machinery import codec, errors, kinds

ROLES = {"Role": "roles", "ClusterRole": "clusterroles"}


def _forbidden(req: Request, why: str) -> errors.Forbidden:
    name = req.obj.metadata.name
    return errors.Forbidden(f'{req.info.resource} "{name}" is forbidden: {why}', kind=req.info.plural, name=name,
                            group=req.info.group)


def only_gc_fields(new, old) -> bool:
    """Kubernetes' IsOnlyMutatingGCFields: nothing but ownerReferences, finalizers
    (and server-kept metadata) changed."""
    copied = codec.copy(new)
    m, o = copied.metadata, old.metadata
    for name in ("owner_references", "finalizers", "managed_fields"):
        m.ClearField(name)
        getattr(m, name).extend(getattr(o, name))
    m.resource_version, m.generation = o.resource_version, o.generation
    return copied == old


class RBACEscalation:
    """A validating plugin (apiserver.admission.Plugin's interface)."""
    name = "RBACEscalation"

    async def validate(self, req: Request) -> list[str]:
        authz = getattr(req.store, "authorization", None)
        kind = req.info.kind
        if (authz is None or req.operation not in (CREATE, UPDATE) or req.subresource
                or kind not in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
                or escalation.is_master(req.user)):
            return []
        if req.operation == UPDATE and only_gc_fields(req.obj, req.old):
            return []                       # the garbage collector's owner references and finalizers
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
