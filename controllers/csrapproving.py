"""The CSR approving controller (Kubernetes' pkg/controller/certificates/approver,
sarApprover): auto-approves node client certificates.

A CertificateSigningRequest is approved, with reason AutoApproved, when

- its signerName is kubernetes.io/kube-apiserver-client-kubelet,
- its request is a node client request (certificates.IsKubeletClientCSR):
  subject O=system:nodes exactly, CN=system:node:<name>, no SANs, usages
  {digital signature, client auth} (+ key encipherment for RSA keys), and
- a SubjectAccessReview says the requestor (the CSR's username, groups,
  uid and extra) may `create` `certificatesigningrequests/selfnodeclient`
  (a node renewing its own certificate: username == the request's CN) or
  `certificatesigningrequests/nodeclient` (any node client certificate),
  asked in that order, as `recognizers()` lists them. RBAC grants these
  (apiserver/auth/joinpolicy.py binds them as kubeadm does: nodeclient to
  the bootstrap tokens' group system:bootstrappers:kubeadm:default-node-token,
  selfnodeclient to system:nodes).

Anything else stays Pending for a human (`kctl certificate approve|deny`).
The requestor fields are trusted because the apiserver fills them in from
the authenticated user (apiserver/admission_csr.py). The review is injected
(`allowed`): by default a SubjectAccessReview through the client.
"""
from __future__ import annotations

from cryptography import x509

from machinery import csr as csrs, errors
from machinery.pb import authorization_pb2

from controllers.base import Controller

REASON = "AutoApproved"
MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
SELF_MESSAGE = "Auto approving self kubelet client certificate after SubjectAccessReview."
SELF_NODE_CLIENT, NODE_CLIENT = "selfnodeclient", "nodeclient"
ALLOWED_USAGES = ({"digital signature", "client auth"}, {"key encipherment", "digital signature", "client auth"})


def _sans(req) -> dict[str, int]:
    try:
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    kinds_ = {"DNS": x509.DNSName, "email": x509.RFC822Name, "IP": x509.IPAddress,
              "URI": x509.UniformResourceIdentifier}
    return {k: len(san.get_values_for_type(t)) for k, t in kinds_.items()}


def kubelet_client_problem(csr, req=None) -> str:
    """'' when csr is a valid kubelet client request, else why not
    (Kubernetes' ValidateKubeletClientCSR wording)."""
    if csr.spec.signer_name != csrs.KUBE_APISERVER_CLIENT_KUBELET:
        return f"signerName must be {csrs.KUBE_APISERVER_CLIENT_KUBELET}"
    try:
        req = req or csrs.parse_request(csr.spec.request)
    except csrs.BadRequestPEM as exc:
        return str(exc)
    cn, orgs = csrs.subject(req)
    if orgs != [csrs.NODES_GROUP]:
        return "subject organization is not system:nodes"
    for kind, n in _sans(req).items():
        if n:
            return f"{kind} subjectAltNames are not allowed"
    if not cn.startswith(csrs.NODE_USER_PREFIX):
        return "subject common name does not begin with system:node:"
    if set(csr.spec.usages) not in ALLOWED_USAGES:
        return "usages did not match [client auth digital signature key encipherment]"
    return ""


def recognizers(csr) -> list[tuple[str, str]]:
    """(subresource to review, approval message) for a pending node client CSR, in the
    order asked (sarApprover's recognizers); [] when the CSR is decided or not one."""
    if csrs.is_approved(csr) or csrs.is_denied(csr) or kubelet_client_problem(csr):
        return []
    cn, _ = csrs.subject(csrs.parse_request(csr.spec.request))
    own = [(SELF_NODE_CLIENT, SELF_MESSAGE)] if csr.spec.username == cn else []
    return own + [(NODE_CLIENT, MESSAGE)]


def access_review(csr, subresource: str):
    """The SubjectAccessReview of the CSR's requestor creating certificatesigningrequests/<subresource>."""
    review = authorization_pb2.SubjectAccessReview(api_version="authorization.k8s.io/v1",
                                                   kind="SubjectAccessReview")
    review.spec.user, review.spec.uid = csr.spec.username, csr.spec.uid
    review.spec.groups.extend(csr.spec.groups)
    for key, values in csr.spec.extra.items():
        review.spec.extra[key] = list(values.items)
    r = review.spec.resource_attributes
    r.group, r.resource, r.subresource, r.verb = "certificates.k8s.io", "certificatesigningrequests", subresource, "create"
    return review


class CSRController(Controller):
    """A controller of CertificateSigningRequests: every add and update enqueues the CSR."""

    def __init__(self, client, factory, recorder=None, workers: int = 2):
        super().__init__(client, factory, recorder, workers)
        self.csr_inf = factory.informer("CertificateSigningRequest")
        self.csr_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), None)

    def informers(self):
        return [self.csr_inf]


class CSRApprovingController(CSRController):
    name = "csrapproving"

    def __init__(self, client, factory, recorder=None, workers: int = 2, allowed=None):
        super().__init__(client, factory, recorder, workers)
        self.allowed = allowed or self.subject_access_review

    async def subject_access_review(self, csr, subresource: str) -> bool:
        return (await self.client.review(access_review(csr, subresource))).status.allowed

    async def decide(self, csr) -> str:
        """The approval message when the CSR is to be auto-approved, else ''."""
        for subresource, message in recognizers(csr):
            if await self.allowed(csr, subresource):
                return message
        return ""

    async def sync(self, key: str) -> None:
        csr = self.csr_inf.get_by_key(key)
        if csr is None or csr.status.certificate:
            return
        message = await self.decide(csr)
        if not message:
            return
        approved = type(csr)()
        approved.CopyFrom(csr)
        csrs.set_condition(approved, csrs.APPROVED, REASON, message)
        try:
            await self.client.update_status(approved, subresource="approval")
        except errors.NotFound:
            return
        self.log.info("%s: approved (%s asked for %s)", key, csr.spec.username,
                      csrs.subject(csrs.parse_request(csr.spec.request))[0])
