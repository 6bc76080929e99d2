"""The CSR signing controller (Kubernetes' pkg/controller/certificates/signer):
issues the certificates of approved CertificateSigningRequests for the
kube-apiserver client signers with the cluster CA.

    --cluster-signing-cert-file / --cluster-signing-key-file   the CA (PEM)
    --cluster-signing-duration                                 default 1 year

A CSR is signed once it is Approved, not Failed and has no certificate
yet, and its signerName is kubernetes.io/kube-apiserver-client-kubelet
(which must also be a valid node client request),
kubernetes.io/kubelet-serving (a valid node serving request,
controllers/csrserving.py) or kubernetes.io/kube-apiserver-client (usages
within digital signature, key encipherment, client auth). A request that breaks its signer's rules gets
a Failed condition (reason SignerValidationFailure) instead. The
certificate has the request's subject and SANs, the requested usages,
NotBefore 5 minutes back (clock skew), and NotAfter = now + min(expirationSeconds,
--cluster-signing-duration), less those 5 minutes for certificates of 8
hours or more, never past the CA's own expiry (Kubernetes'
PermissiveSigningPolicy). It is written through the status subresource.
"""
from __future__ import annotations

import datetime
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from machinery import csr as csrs, errors

from controllers.csrapproving import CSRController, kubelet_client_problem
from controllers.csrserving import kubelet_serving_problem

BACKDATE = 300.0
SHORT = 8 * 3600.0
DEFAULT_DURATION = 365 * 24 * 3600.0
CLIENT_USAGES = {"digital signature", "key encipherment", "client auth"}
SIGNERS = (csrs.KUBE_APISERVER_CLIENT_KUBELET, csrs.KUBELET_SERVING, csrs.KUBE_APISERVER_CLIENT)
_KEY_USAGE_FLAGS = {"digital signature": "digital_signature", "key encipherment": "key_encipherment",
                    "content commitment": "content_commitment", "data encipherment": "data_encipherment",
                    "key agreement": "key_agreement", "cert sign": "key_cert_sign", "crl sign": "crl_sign"}
_EXT_USAGES = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
               "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
               "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
               "timestamping": ExtendedKeyUsageOID.TIME_STAMPING, "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING}


class CA:
    """The cluster signing CA."""

    def __init__(self, cert_pem: bytes, key_pem: bytes):
        self.cert = csrs.load_certificate(cert_pem)
        self.key = serialization.load_pem_private_key(key_pem, password=None)

    @classmethod
    def from_files(cls, cert_file: str, key_file: str) -> "CA":
        try:
            with open(cert_file, "rb") as c, open(key_file, "rb") as k:
                return cls(c.read(), k.read())
        except (OSError, ValueError) as exc:
            raise errors.ConfigError(f"cannot load the cluster signing CA ({cert_file}, {key_file}): {exc}") from exc


def signer_problem(csr) -> str:
    """'' when csr may be signed by its signer, else the Failed message."""
    if csr.spec.signer_name == csrs.KUBE_APISERVER_CLIENT_KUBELET:
        return kubelet_client_problem(csr)
    if csr.spec.signer_name == csrs.KUBELET_SERVING:
        return kubelet_serving_problem(csr)
    bad = sorted(set(csr.spec.usages) - CLIENT_USAGES)
    if bad:
        return f"invalid usage for client certificate: {bad[0]}"
    return ""


def duration_of(csr, max_duration: float) -> float:
    """min(expirationSeconds, max_duration) (Kubernetes' ExpirationSecondsToDuration + the flag's cap)."""
    if csr.spec.HasField("expiration_seconds"):
        return float(min(max(csr.spec.expiration_seconds, csrs.MIN_EXPIRATION_SECONDS), max_duration))
    return max_duration


def sign(ca: CA, csr, duration: float, now: float) -> bytes:
    """The PEM certificate for csr (which is assumed to have passed signer_problem)."""
    req = csrs.parse_request(csr.spec.request)
    start = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    if start >= ca.cert.not_valid_after_utc:
        raise errors.ConfigError("refusing to sign a certificate that expired in the past: "
                                 f"NotAfter={ca.cert.not_valid_after_utc.isoformat()}")
    # long-lived certificates end `backdate` earlier; short ones (< 8h) keep their whole duration
    end = duration - (BACKDATE if duration >= SHORT else 0)
    not_after = min(start + datetime.timedelta(seconds=end), ca.cert.not_valid_after_utc)
    flags = {v: (k in csr.spec.usages) for k, v in _KEY_USAGE_FLAGS.items()}
    b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca.cert.subject)
         .public_key(req.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start - datetime.timedelta(seconds=BACKDATE)).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(encipher_only=False, decipher_only=False, **flags), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    ext = [_EXT_USAGES[u] for u in csr.spec.usages if u in _EXT_USAGES]
    if ext:
        b = b.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    try:
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        b = b.add_extension(san.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    return b.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CSRSigningController(CSRController):
    name = "csrsigning"

    def __init__(self, client, factory, recorder=None, workers: int = 2, *, ca: CA,
                 duration: float = DEFAULT_DURATION, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.ca, self.duration, self.clock = ca, duration, clock

    async def sync(self, key: str) -> None:
        csr = self.csr_inf.get_by_key(key)
        if (csr is None or csr.status.certificate or not csrs.is_approved(csr) or csrs.is_failed(csr)
                or csr.spec.signer_name not in SIGNERS):
            return
        out = type(csr)()
        out.CopyFrom(csr)
        problem = signer_problem(csr)
        if problem:
            csrs.set_condition(out, csrs.FAILED, "SignerValidationFailure", problem, self.clock())
        else:
            out.status.certificate = sign(self.ca, csr, duration_of(csr, self.duration), self.clock())
        try:
            await self.client.update_status(out)
        except errors.NotFound:
            return
        self.log.info("%s: %s", key, f"failed: {problem}" if problem else "signed")
