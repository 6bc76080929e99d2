"""Admission for CertificateSigningRequests.

- CertificateRequestor (mutating, create): spec.username, uid, groups and
  extra are the identity of the user who created the request, whatever the
  client sent (Kubernetes does this in the CSR strategy's PrepareForCreate
  from the request context); the approver trusts only these fields.
- CertificateSubjectRestriction (validating, create): a request for the
  kubernetes.io/kube-apiserver-client signer may not ask for the
  system:masters group (Kubernetes' plugin of that name), so a grant to
  create CSRs is never a path to cluster-admin through auto-approval.

The CertificateApproval and CertificateSigning plugins (the `approve` and
`sign` verbs on `signers`) need an authorizer in admission; they come with
RBAC.
"""
from __future__ import annotations

from machinery import csr as csrs, errors

KIND = "CertificateSigningRequest"


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
            raise errors.Forbidden(f'certificatesigningrequests.certificates.k8s.io "{req.obj.metadata.name}" is '
                                   f'forbidden: use of {csrs.KUBE_APISERVER_CLIENT} signer with system:masters '
                                   "group is not allowed")
        return []
