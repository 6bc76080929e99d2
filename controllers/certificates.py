"""The controller manager's CertificateSigningRequest controllers (Kubernetes'
pkg/controller/certificates): how a joining node gets its client certificate.

* `CSRApprovingController` (csrapproving) approves node client requests:
  signer `kubernetes.io/kube-apiserver-client-kubelet`, subject
  `O=system:nodes, CN=system:node:NAME`, no SANs, usages within {digital
  signature, key encipherment, client auth} including client auth. Kubernetes
  asks a SubjectAccessReview for `certificatesigningrequests/nodeclient`
  (bootstrappers) or `/selfnodeclient` (a node renewing its own); until kctl
  has RBAC the same grants are hard-wired: a requestor in a
  `system:bootstrappers` group, or the node itself (username == CN, in
  system:nodes). Condition Approved, reason AutoApproved.
* `CSRSigningController` (csrsigning) signs approved requests of the
  kubernetes.io signers with the cluster CA (`--cluster-signing-cert-file`,
  `--cluster-signing-key-file`), valid for the shorter of
  `--cluster-signing-duration` and the request's expirationSeconds, back-dated
  5 minutes for clock skew; a kubelet client request that is not a node
  client certificate gets the Failed condition (SignerValidationFailure).
  The certificate goes in through the status subresource.
"""
from __future__ import annotations

import datetime
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from machinery import codec, errors
from machinery.validation.certificates import parse_request

from controllers.base import Controller

KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNERS = (KUBELET_CLIENT, "kubernetes.io/kube-apiserver-client", "kubernetes.io/kubelet-serving",
           "kubernetes.io/legacy-unknown")
NODE_USAGES = {"digital signature", "key encipherment", "client auth"}
BACKDATE = datetime.timedelta(minutes=5)


def is_node_client(csr) -> bool:
    """Kubernetes' isNodeClientCert on the parsed request."""
    if csr.spec.signer_name != KUBELET_CLIENT:
        return False
    try:
        req = parse_request(csr.spec.request)
    except ValueError:
        return False
    orgs = [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    cns = [a.value for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return False
    except x509.ExtensionNotFound:
        pass
    usages = set(csr.spec.usages)
    return (orgs == ["system:nodes"] and len(cns) == 1 and cns[0].startswith("system:node:")
            and "client auth" in usages and usages <= NODE_USAGES)


def has_condition(csr, *types: str) -> bool:
    return any(c.type in types for c in csr.status.conditions)


def _add_condition(csr, type_: str, reason: str, message: str):
    new = codec.copy(csr)
    c = new.status.conditions.add(type=type_, status="True", reason=reason, message=message)
    c.last_update_time.GetCurrentTime()
    c.last_update_time.nanos = 0
    c.last_transition_time.CopyFrom(c.last_update_time)
    return new


class _CSRController(Controller):
    def __init__(self, client, factory, recorder=None, workers: int = 1):
        super().__init__(client, factory, recorder, workers)
        self.csr_inf = factory.informer("CertificateSigningRequest")
        self.csr_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), None)

    def informers(self):
        return [self.csr_inf]

    async def _write(self, new) -> None:
        try:
            await self.client.update_status(new)
        except (errors.NotFound, errors.Conflict):
            return              # gone, or changed: its event brings the key back


class CSRApprovingController(_CSRController):
    name = "csrapproving"

    async def sync(self, key: str) -> None:
        csr = self.csr_inf.get_by_key(key)
        if csr is None or has_condition(csr, "Approved", "Denied") or csr.status.certificate:
            return
        if not is_node_client(csr):
            return
        cn = parse_request(csr.spec.request).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        if csr.spec.username == cn and "system:nodes" in csr.spec.groups:
            message = "Auto approving self kubelet client certificate after SubjectAccessReview."
        elif any(g == "system:bootstrappers" or g.startswith("system:bootstrappers:") for g in csr.spec.groups):
            message = "Auto approving kubelet client certificate after SubjectAccessReview."
        else:
            return
        await self._write(_add_condition(csr, "Approved", "AutoApproved", message))
        self.log.info("%s: approved (%s for %s)", key, csr.spec.username, cn)


class CSRSigningController(_CSRController):
    name = "csrsigning"

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, ca_cert: bytes, ca_key: bytes,
                 duration: float = 365 * 86400, clock=None):
        super().__init__(client, factory, recorder, workers)
        self.ca = x509.load_pem_x509_certificate(ca_cert)
        self.key = serialization.load_pem_private_key(ca_key, password=None)
        self.duration = datetime.timedelta(seconds=duration)
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))

    async def sync(self, key: str) -> None:
        csr = self.csr_inf.get_by_key(key)
        if (csr is None or not has_condition(csr, "Approved") or has_condition(csr, "Failed")
                or csr.status.certificate or csr.spec.signer_name not in SIGNERS):
            return
        if csr.spec.signer_name == KUBELET_CLIENT and not is_node_client(csr):
            await self._write(_add_condition(csr, "Failed", "SignerValidationFailure",
                                             "invalid x509 certificate request for signer " + KUBELET_CLIENT))
            return
        new = codec.copy(csr)
        new.status.certificate = self.sign(csr)
        await self._write(new)
        self.log.info("%s: signed by %s", key, csr.spec.signer_name)

    def sign(self, csr) -> bytes:
        req = parse_request(csr.spec.request)
        now = self.clock()
        life = self.duration
        if csr.spec.HasField("expiration_seconds"):
            life = min(life, datetime.timedelta(seconds=csr.spec.expiration_seconds))
        not_after = min(now + life, self.ca.not_valid_after_utc)
        usages = set(csr.spec.usages)
        eku = [oid for name, oid in (("client auth", ExtendedKeyUsageOID.CLIENT_AUTH),
                                     ("server auth", ExtendedKeyUsageOID.SERVER_AUTH)) if name in usages]
        b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(self.ca.subject)
             .public_key(req.public_key()).serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
             .not_valid_before(now - BACKDATE).not_valid_after(not_after)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature="digital signature" in usages,
                                          content_commitment=False,
                                          key_encipherment="key encipherment" in usages, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.public_key()),
                            critical=False))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        try:
            san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            if csr.spec.signer_name != KUBELET_CLIENT:
                b = b.add_extension(san.value, critical=False)
        except x509.ExtensionNotFound:
            pass
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
