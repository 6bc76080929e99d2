"""Impersonation as Kubernetes does it (apiserver/pkg/endpoints/filters/impersonation).

A request may act as someone else with the headers `Impersonate-User`,
`Impersonate-Group` (repeatable), `Impersonate-Uid` and
`Impersonate-Extra-KEY` (repeatable; KEY is %-decoded and lower-cased);
over gRPC the same names in lower case are metadata keys. Each requested
item is authorized separately with the verb `impersonate` for the
authenticated requester: resource `users` (or `serviceaccounts` in the
namespace, for `system:serviceaccount:NS:NAME`), `groups`, `uids`, or
`userextras/KEY` (the last two in authentication.k8s.io). A refusal is
Kubernetes' 403 (`users "jane" is forbidden: User "bob" cannot
impersonate resource "users" ...`); groups, uid or extras without a user
are 400. The new identity gets system:authenticated (a service account
without explicit groups gets system:serviceaccounts and
system:serviceaccounts:NS) and carries the requester as `impersonator`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from urllib.parse import unquote

from apiserver.auth import authz
from apiserver.auth.authz import Attributes
from apiserver.auth.user import AUTHENTICATED, UNAUTHENTICATED, UserInfo
from machinery import errors

USER, GROUP, UID, EXTRA = "impersonate-user", "impersonate-group", "impersonate-uid", "impersonate-extra-"
AUTHN_GROUP = "authentication.k8s.io"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Ask:
    kind: str              # User ServiceAccount Group UserExtra UID
    name: str
    namespace: str = ""
    field_path: str = ""

    def __str__(self) -> str:                       # Go's %v of a v1.ObjectReference
        version = "authentication.k8s.io/v1" if self.kind in ("UserExtra", "UID") else ""
        return "{" + " ".join([self.kind, self.namespace, self.name, "", version, "", self.field_path]) + "}"


def _split_sa(name: str) -> tuple[str, str] | None:
    if not name.startswith(SA_PREFIX):
        return None
    ns, sep, sa = name[len(SA_PREFIX):].partition(":")
    return (ns, sa) if sep and ns and sa and ":" not in sa else None


def requests(headers: Iterable[tuple[str, str]]) -> list[Ask]:
    """The impersonation asked for by a request's headers (or gRPC metadata)."""
    asks: list[Ask] = []
    user = ""
    groups, extras, uid = [], [], ""
    for key, value in headers:
        k = key.lower()
        if k == USER and not user:
            user = value
        elif k == GROUP:
            groups.append(Ask("Group", value))
        elif k.startswith(EXTRA):
            extras.append(Ask("UserExtra", value, field_path=unquote(k[len(EXTRA):])))
        elif k == UID and not uid:
            uid = value
    if user:
        sa = _split_sa(user)
        asks.append(Ask("ServiceAccount", sa[1], sa[0]) if sa else Ask("User", user))
    asks += groups + extras
    if uid:
        asks.append(Ask("UID", uid))
    if asks and not user:
        raise errors.BadRequest(f"requested [{' '.join(map(str, asks))}] without impersonating a user")
    return asks


def _attributes(requester: UserInfo, ask: Ask) -> Attributes:
    resource, group, sub = {"ServiceAccount": ("serviceaccounts", "", ""), "User": ("users", "", ""),
                            "Group": ("groups", "", ""), "UID": ("uids", AUTHN_GROUP, ""),
                            "UserExtra": ("userextras", AUTHN_GROUP, ask.field_path)}[ask.kind]
    return Attributes(requester, "impersonate", namespace=ask.namespace, api_group=group, resource=resource,
                      subresource=sub, name=ask.name)


async def impersonate(requester: UserInfo, headers: Iterable[tuple[str, str]], authorizer) -> UserInfo:
    """The identity the request acts as: `requester` itself, or whom it may impersonate (else 403/400)."""
    asks = requests(headers)
    if not asks:
        return requester
    name, uid, groups, extra = "", "", [], {}
    explicit_groups = any(a.kind == "Group" for a in asks)
    for ask in asks:
        await authz.check(authorizer, _attributes(requester, ask))
        if ask.kind == "ServiceAccount":
            name = f"{SA_PREFIX}{ask.namespace}:{ask.name}"
            if not explicit_groups:
                groups += ["system:serviceaccounts", f"system:serviceaccounts:{ask.namespace}"]
        elif ask.kind == "User":
            name = ask.name
        elif ask.kind == "Group":
            groups.append(ask.name)
        elif ask.kind == "UserExtra":
            extra.setdefault(ask.field_path, []).append(ask.name)
        else:
            uid = ask.name
    if name == "system:anonymous":
        if UNAUTHENTICATED not in groups:
            groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(name, uid=uid, groups=tuple(groups), extra={k: tuple(v) for k, v in extra.items()},
                    impersonator=requester)
