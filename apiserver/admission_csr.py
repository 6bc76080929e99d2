"""Admission for CertificateSigningRequests.

- CertificateRequestor (mutating, create): spec.username, uid, groups and
  extra are the identity of the user who created the request, whatever the
  client sent (Kubernetes does this in the CSR strategy's PrepareForCreate
  from the request context); the approver trusts only these fields.
- CertificateSubjectRestriction (validating, create): a request for the
  kubernetes.io/kube-apiserver-client signer may not ask for the
  system:masters group (Kubernetes' plugin of that name), so a grant to
  create CSRs is never a path to cluster-admin through auto-approval.

- CertificateApproval (validating, the `approval` subresource): adding or
  changing Approved/Denied conditions needs the `approve` verb on the
  synthetic resource `signers` (group certificates.k8s.io) named after the
  stored request's signerName, or `<domain>/*` for all signers of that
  domain (`kubernetes.io/*`).
- CertificateSigning (validating, the `status` subresource): a write that
  changes status.certificate or status.conditions (a signer's Failed
  condition) needs the `sign` verb on `signers` the same way.

Both ask the apiserver's authorizer (`store.authorization`, set by
apiserver/auth/setup.py, as apiserver/admission_rbac.py does), so
system:masters passes by the superuser step and everyone else by RBAC; a
Store without one (unit tests, tools) skips them. They check the *old*
object's signerName, as Kubernetes does, and refuse with its message:
`certificatesigningrequests.certificates.k8s.io "NAME" is forbidden: user
not permitted to approve requests with signerName "SIGNER"`. The default
policy gives the controller manager (system:kube-controller-manager)
Kubernetes' certificate-controller grants: approve on the kubelet client
signer, sign on the four kubernetes.io signers
(apiserver/auth/bootstrappolicy.py), and kctl's approve on
kubernetes.io/kubelet-serving (apiserver/auth/joinpolicy.py: its approver
approves node serving certificates, controllers/csrserving.py).
"""
from __future__ import annotations

from apiserver.auth.authz import Attributes
from machinery import csr as csrs, errors

KIND = "CertificateSigningRequest"
GROUP = "certificates.k8s.io"


def _forbidden(name: str, why: str) -> errors.Forbidden:
    return errors.Forbidden(f'certificatesigningrequests.{GROUP} "{name}" is forbidden: {why}',
                            kind="certificatesigningrequests", name=name, group=GROUP)


async def authorized_for_signer(authorizer, user, verb: str, signer: str) -> bool:
    """Kubernetes' IsAuthorizedForSignerName: `verb` on signers/<signer>, else on
    signers/<domain>/* (the part of the name before the first '/')."""
    for name in (signer, signer.split("/")[0] + "/*"):
        a = Attributes(user, verb, api_group=GROUP, api_version="*", resource="signers", name=name)
        if (await authorizer.authorize(a)).allowed:
            return True
    return False


class _SignerVerb:
    """A validating plugin that asks for `verb` on the old object's signer when `applies(req)`."""
    name, verb, subresource = "", "", ""

    async def mutate(self, req) -> None:
        return None

    def applies(self, req) -> bool:
        return True

    async def validate(self, req) -> list[str]:
        authz = getattr(req.store, "authorization", None)
        if (authz is None or req.info.kind != KIND or req.operation != "UPDATE"
                or req.subresource != self.subresource or not self.applies(req)):
            return []
        signer = req.old.spec.signer_name
        if not await authorized_for_signer(authz.authorizer, req.user, self.verb, signer):
            raise _forbidden(req.old.metadata.name,
                             f'user not permitted to {self.verb} requests with signerName "{signer}"')
        return []


class CertificateApproval(_SignerVerb):
    name, verb, subresource = "CertificateApproval", "approve", "approval"


class CertificateSigning(_SignerVerb):
    name, verb, subresource = "CertificateSigning", "sign", "status"

    def applies(self, req) -> bool:
        """Only when status.certificate or status.conditions changed."""
        new, old = req.obj.status, req.old.status
        return new.certificate != old.certificate or list(new.conditions) != list(old.conditions)


class CertificateRequestor:
    name = "CertificateRequestor"

    async def mutate(self, req) -> None:
        if req.info.kind != KIND or req.operation != "CREATE":
            return
        spec, user = req.obj.spec, req.user
        spec.username, spec.uid = user.name, user.uid
        del spec.groups[:]
        spec.groups.extend(user.groups)
        spec.extra.clear()
        for k, values in (user.extra or {}).items():
            spec.extra[k].items.extend(values)

    async def validate(self, req) -> list[str]:
        return []


class CertificateSubjectRestriction:
    name = "CertificateSubjectRestriction"

    async def mutate(self, req) -> None:
        return None

    async def validate(self, req) -> list[str]:
        if req.info.kind != KIND or req.operation != "CREATE":
            return []
        if req.obj.spec.signer_name != csrs.KUBE_APISERVER_CLIENT:
            return []
        try:
            _, orgs = csrs.subject(csrs.parse_request(req.obj.spec.request))
        except csrs.BadRequestPEM:
            return []                       # validation already refused it
        if csrs.SYSTEM_MASTERS in orgs:
            raise _forbidden(req.obj.metadata.name, f"use of {csrs.KUBE_APISERVER_CLIENT} signer with "
                                                    "system:masters group is not allowed")
        return []
