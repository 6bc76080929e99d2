"""Authorization: may this user do this verb on this resource?

`Attributes` is Kubernetes' authorizer.Attributes; an Authorizer answers a
Decision (ALLOW, DENY or NO_OPINION, with a reason). `Chain` asks its
authorizers in order: the first ALLOW or DENY wins; when all have no
opinion the request is denied. `forbidden()` builds Kubernetes' 403
message, word for word:

    pods "web" is forbidden: User "jane" cannot get resource "pods" in API group "" in the namespace "default"
    nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope
    deployments.apps "web" is forbidden: User "jane" cannot patch resource "deployments/scale" in API group "apps" ...
    forbidden: User "jane" cannot get path "/metrics"
"""
from __future__ import annotations

from dataclasses import dataclass

from apiserver.auth.user import SYSTEM_MASTERS, UserInfo
from machinery import errors

ALLOW, DENY, NO_OPINION = "Allow", "Deny", "NoOpinion"
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str                       # get list watch create update patch delete deletecollection (+ impersonate, ...)
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""              # plural, lower case: "pods"
    subresource: str = ""           # "status", "log", "exec", ...
    name: str = ""
    resource_request: bool = True
    path: str = ""                  # for non-resource requests: "/version"

    @property
    def read_only(self) -> bool:
        return self.verb in READ_VERBS


@dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == ALLOW


class Authorizer:
    async def authorize(self, a: Attributes) -> Decision:
        raise NotImplementedError


class AlwaysAllow(Authorizer):
    async def authorize(self, a: Attributes) -> Decision:
        return Decision(ALLOW)


class Superuser(Authorizer):
    """system:masters may do anything, whatever RBAC says (Kubernetes' privileged-group authorizer)."""

    async def authorize(self, a: Attributes) -> Decision:
        return Decision(ALLOW) if a.user.in_group(SYSTEM_MASTERS) else Decision(NO_OPINION)


class Chain(Authorizer):
    def __init__(self, *authorizers: Authorizer):
        self.authorizers = list(authorizers)

    async def authorize(self, a: Attributes) -> Decision:
        reasons = []
        for z in self.authorizers:
            d = await z.authorize(a)
            if d.verdict != NO_OPINION:
                return d
            if d.reason:
                reasons.append(d.reason)
        return Decision(NO_OPINION, ", ".join(reasons))


def forbidden(a: Attributes, reason: str = "") -> errors.Forbidden:
    """Kubernetes' 403 for a denied request (apiserver/pkg/endpoints/handlers/responsewriters.forbiddenMessage)."""
    who = f'User "{a.user.name}"'
    if not a.resource_request:
        msg = f'forbidden: {who} cannot {a.verb} path "{a.path}"'
        return errors.Forbidden(msg + (f": {reason}" if reason else ""))
    resource = a.resource + (f"/{a.subresource}" if a.subresource else "")
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    qualified = f"{a.resource}.{a.api_group}" if a.api_group else a.resource      # a GroupResource
    subject = f'{qualified} "{a.name}"' if a.name else qualified
    msg = f'{subject} is forbidden: {who} cannot {a.verb} resource "{resource}" in API group "{a.api_group}" {where}'
    return errors.Forbidden(msg + (f": {reason}" if reason else ""), kind=a.resource, name=a.name,
                            group=a.api_group)


async def check(authorizer: Authorizer | None, a: Attributes) -> None:
    """Raise Kubernetes' 403 unless the authorizer allows `a` (no authorizer: allowed)."""
    if authorizer is None:
        return
    d = await authorizer.authorize(a)
    if not d.allowed:
        raise forbidden(a, d.reason)
