"""Admission: the plugins every write passes inside the Store, after
authentication and authorization, in Kubernetes' two phases.

    create:  default -> MUTATING -> validate -> VALIDATING -> etcd
    update:  default -> MUTATING -> validate -> VALIDATING -> etcd
             (status updates skip defaulting and the mutating phase; the
              validating phase sees them with subresource "status")
    delete:  read -> VALIDATING -> etcd (graceful: the deletion timestamp)

A plugin gets one `Request`: the operation, the kind, the new and old
object, the subresource, the user who asked (apiserver.auth.current()) and
the Store to read other objects from. A plugin refuses with an ApiError
(usually errors.Forbidden with Kubernetes' wording) and nothing is written;
validating plugins may return warnings, which reach the client
(kubectl prints them as `Warning: ...`). Dry-run requests are admitted like
real ones, as in Kubernetes.

Plugins register in MUTATING / VALIDATING below, in the order Kubernetes'
recommended plugin order gives them.
"""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from apiserver import admission_priority
from apiserver.admission_noderestriction import NodeRestriction
from apiserver.admission_rbac import RBACEscalation
from apiserver.auth import UserInfo, current
from machinery import kinds

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


@dataclass
class Request:
    operation: str
    info: kinds.KindInfo
    obj: Message | None                 # the new object (None on DELETE)
    old: Message | None = None          # the stored object (UPDATE, DELETE)
    subresource: str = ""
    store: object = None                # apiserver.crud.Store, to read other objects
    dry_run: bool = False
    user: UserInfo | None = None

    def __post_init__(self):
        if self.user is None:
            self.user = current()


class Plugin:
    name = ""

    async def mutate(self, req: Request) -> None:
        """Change req.obj in place (mutating phase)."""

    async def validate(self, req: Request) -> list[str]:
        """Refuse with an ApiError, or return warnings (validating phase)."""
        return []


class Priority(Plugin):
    """Kubernetes' Priority plugin (apiserver/admission_priority.py)."""
    name = "Priority"

    async def mutate(self, req: Request) -> None:
        if req.operation == UPDATE and not req.subresource:
            admission_priority.admit_update(req.obj, req.old)

    async def validate(self, req: Request) -> list[str]:
        if req.operation == CREATE:
            await admission_priority.admit(req.store, req.obj)
        return []


MUTATING: list[Plugin] = [Priority()]
VALIDATING: list[Plugin] = [NodeRestriction(), Priority(), RBACEscalation()]


async def mutate(req: Request) -> None:
    for plugin in MUTATING:
        await plugin.mutate(req)


async def validate(req: Request) -> list[str]:
    warnings: list[str] = []
    for plugin in VALIDATING:
        warnings += await plugin.validate(req)
    return warnings
