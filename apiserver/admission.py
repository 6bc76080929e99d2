"""Admission: the plugins every write passes inside the Store, after
authentication and authorization, in Kubernetes' two phases.

    create:  default -> MUTATING -> validate -> VALIDATING -> etcd
    update:  default -> MUTATING -> validate -> VALIDATING -> etcd
             (status updates skip defaulting and the mutating phase; the
              validating phase sees them with subresource "status", or
              "approval" for a CSR's Approved/Denied conditions)
    delete:  read -> VALIDATING -> etcd (graceful: the deletion timestamp)

A plugin gets one `Request`: the operation, the kind, the new and old
object, the subresource, the user who asked (apiserver.auth.current()) and
the Store to read other objects from. A plugin refuses with an ApiError
(usually errors.Forbidden with Kubernetes' wording) and nothing is written;
validating plugins may return warnings, which reach the client
(kubectl prints them as `Warning: ...`). Dry-run requests are admitted like
real ones, as in Kubernetes.

Plugins register in MUTATING / VALIDATING below, in the order Kubernetes'
recommended plugin order gives them (ServiceAccount, then Priority; the
CertificateSigningRequest plugins of apiserver/admission_csr.py —
CertificateApproval, CertificateSigning, CertificateSubjectRestriction —
near the end, RBAC's escalation check last; kctl's DNSRestriction next to
NodeRestriction);
`disable(names)` is the apiserver's `--disable-admission-plugins`.
"""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from apiserver import admission_csr, admission_priority
from apiserver.admission_noderestriction import DNSRestriction, NodeRestriction
from apiserver.admission_rbac import RBACEscalation
from apiserver.auth import UserInfo, current
from apiserver.serviceaccount.admission import ServiceAccountPlugin
from machinery import errors, kinds

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
        admission_priority.note_write(req)      # PriorityClass writes: read-your-writes over the watch cache
        return []


from apiserver.podsecurity import PodSecurity  # noqa: E402  (it subclasses Plugin above)

POD_SECURITY = PodSecurity()
MUTATING: list[Plugin] = [ServiceAccountPlugin(), Priority(), admission_csr.CertificateRequestor()]
VALIDATING: list[Plugin] = [NodeRestriction(), DNSRestriction(), POD_SECURITY, Priority(),
                            admission_csr.CertificateApproval(), admission_csr.CertificateSigning(),
                            admission_csr.CertificateSubjectRestriction(), RBACEscalation()]


def disable(names) -> None:
    """--disable-admission-plugins: drop the named plugins (ConfigError for a name kctl has not)."""
    names = {n for n in names if n}
    known = {p.name for p in MUTATING + VALIDATING}
    if names - known:
        raise errors.ConfigError(f"unknown admission plugins: {', '.join(sorted(names - known))} "
                                 f"(known: {', '.join(sorted(known))})")
    MUTATING[:] = [p for p in MUTATING if p.name not in names]
    VALIDATING[:] = [p for p in VALIDATING if p.name not in names]


async def mutate(req: Request) -> None:
    for plugin in MUTATING:
        await plugin.mutate(req)


async def validate(req: Request) -> list[str]:
    warnings: list[str] = []
    for plugin in VALIDATING:
        warnings += await plugin.validate(req)
    tokens = getattr(req.store, "token_objects", None)
    if tokens is not None and req.operation != CREATE and not req.dry_run:
        old = req.old if req.old is not None else req.obj   # read-your-writes for the token authenticators
        tokens.expect(req.info.kind, old.metadata.namespace, old.metadata.name)     # (apiserver/auth/tokencache.py)
    return warnings
