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

It also approves node serving certificates (kubernetes.io/kubelet-serving,
kctl's rule, not Kubernetes': controllers/csrserving.py) when the node
itself asks for its own addresses; it watches Nodes too, so a request that
came before its Node's addresses did is approved when they appear.

Anything else stays Pending for a human (`kctl certificate approve|deny`).
The requestor fields are trusted because the apiserver fills them in from
the authenticated user (apiserver/admission_csr.py). The review is injected
(`allowed`): by default a SubjectAccessReview through the client.
"""
from __future__ import annotations

from machinery import csr as csrs, errors
from machinery.pb import authorization_pb2

from controllers import csrserving
from controllers.base import Controller

REASON = "AutoApproved"
MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
SELF_MESSAGE = "Auto approving self kubelet client certificate after SubjectAccessReview."
SELF_NODE_CLIENT, NODE_CLIENT = "selfnodeclient", "nodeclient"
ALLOWED_USAGES = ({"digital signature", "client auth"}, {"key encipherment", "digital signature", "client auth"})


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
    for kind, names in csrs.sans(req).items():
        if names:
            return f"{kind if kind != 'email' else 'Email'} subjectAltNames are not allowed"
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
        self.node_inf = factory.informer("Node")
        self.node_inf.add_handler(self.node_changed, lambda old, new: self.node_changed(new), None)

    def informers(self):
        return [self.csr_inf, self.node_inf]

    def node_changed(self, node) -> None:
        """Pending serving requests of this node are looked at again (its addresses may be new)."""
        cn = csrs.NODE_USER_PREFIX + node.metadata.name
        for csr in self.csr_inf.list():
            if (csr.spec.signer_name == csrs.KUBELET_SERVING and csr.spec.username == cn
                    and not csr.status.conditions):
                self.enqueue(csr)

    def serving_decision(self, csr) -> str:
        """The approval message for a node serving request kctl approves, else '' (reason logged)."""
        if csrs.is_approved(csr) or csrs.is_denied(csr):
            return ""
        cn = ""
        try:
            cn = csrs.subject(csrs.parse_request(csr.spec.request))[0]
        except csrs.BadRequestPEM:
            pass
        node = self.node_inf.get_by_key(cn[len(csrs.NODE_USER_PREFIX):]) if cn else None
        problem = csrserving.approval_problem(csr, node, self.node_inf.list())
        if problem:
            self.log.info("%s: not approving the serving certificate: %s", csr.metadata.name, problem)
            return ""
        return csrserving.MESSAGE

    async def subject_access_review(self, csr, subresource: str) -> bool:
        return (await self.client.review(access_review(csr, subresource))).status.allowed

    async def decide(self, csr) -> str:
        """The approval message when the CSR is to be auto-approved, else ''."""
        if csr.spec.signer_name == csrs.KUBELET_SERVING:
            return self.serving_decision(csr)
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
