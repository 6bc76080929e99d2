"""CertificateSigningRequests (certificates.k8s.io/v1), the parts every
component shares: the well-known signer names and key usages, making a
node's key and request (the node agent), reading a request back (the
apiserver's validation, the approver, the signer), the conditions
(Approved/Denied/Failed) and the certificate a signer returns.

The cryptography package does the x509 work; nothing here talks to the
API. Kubernetes' equivalents: k8s.io/api/certificates/v1 (constants),
k8s.io/client-go/util/certificate/csr (the request), and
pkg/apis/certificates/helpers.go (conditions, IsCertificateRequestApproved).
"""
from __future__ import annotations

import ipaddress
import re
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from machinery.errors import DecodeError

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
SYSTEM_MASTERS = "system:masters"

# certificates.k8s.io/v1 KeyUsage values (k8s.io/api/certificates/v1/types.go)
ALL_USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
              "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
              "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
              "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
# kubelet's client certificate (client-go's certificate manager, ECDSA keys: no key encipherment)
NODE_CLIENT_USAGES = ("digital signature", "client auth")
# kubelet's serving certificate (--rotate-server-certificates: kubelet's server certificate manager)
NODE_SERVING_USAGES = ("digital signature", "key encipherment", "server auth")
MIN_EXPIRATION_SECONDS = 600


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


class BadRequestPEM(DecodeError):
    """spec.request is not a PEM CERTIFICATE REQUEST with a valid signature."""


# ------------------------------------------------------------------ requests

def new_key() -> ec.EllipticCurvePrivateKey:
    """A node's key: ECDSA P-256, as the kubelet makes one."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes):
    return serialization.load_pem_private_key(pem, password=None)


def make_request(key, common_name: str, organizations=(), ips=(), dns_names=()) -> bytes:
    """A PEM CERTIFICATE REQUEST for CN=common_name, O=organizations, with IP and
    DNS subjectAltNames when given, signed by key."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def node_request(key, node_name: str) -> bytes:
    return make_request(key, NODE_USER_PREFIX + node_name, (NODES_GROUP,))


def node_serving_request(key, node_name: str, ips=(), dns_names=()) -> bytes:
    """The kubelet-serving request: CN=system:node:NAME, O=system:nodes, SANs = the node's
    IPs and host names (kubelet's server certificate template)."""
    return make_request(key, NODE_USER_PREFIX + node_name, (NODES_GROUP,), ips, dns_names)


def sans(req) -> dict[str, list[str]]:
    """A request's (or certificate's) subjectAltNames by kind: DNS, IP, email, URI."""
    try:
        ext = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"DNS": [], "IP": [], "email": [], "URI": []}
    kinds_ = {"DNS": x509.DNSName, "IP": x509.IPAddress, "email": x509.RFC822Name,
              "URI": x509.UniformResourceIdentifier}
    return {k: [str(v) for v in ext.get_values_for_type(t)] for k, t in kinds_.items()}


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """The x509 request in spec.request (Kubernetes' ParseCSR messages)."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in (pem or b""):
        raise BadRequestPEM("PEM block type must be CERTIFICATE REQUEST")
    try:
        req = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise BadRequestPEM(f"asn1: structure error: {exc}") from exc
    if not req.is_signature_valid:
        ecdsa = isinstance(req.public_key(), ec.EllipticCurvePublicKey)
        raise BadRequestPEM("x509: ECDSA verification failure" if ecdsa else "crypto/rsa: verification error")
    return req


def subject(req) -> tuple[str, list[str]]:
    """(CN, [O...]) of a request or certificate."""
    name = req.subject
    cn = [a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (cn[0] if cn else ""), orgs


# ----------------------------------------------------------------- conditions

def condition(csr, ctype: str):
    return next((c for c in csr.status.conditions if c.type == ctype and c.status == "True"), None)


def is_approved(csr) -> bool:
    return condition(csr, APPROVED) is not None


def is_denied(csr) -> bool:
    return condition(csr, DENIED) is not None


def is_failed(csr) -> bool:
    return condition(csr, FAILED) is not None


def set_condition(csr, ctype: str, reason: str, message: str, now: float | None = None) -> None:
    """Add or refresh a True condition of ctype (one per type)."""
    c = next((c for c in csr.status.conditions if c.type == ctype), None) or csr.status.conditions.add(type=ctype)
    secs = int(time.time() if now is None else now)
    if c.status != "True":
        c.last_transition_time.seconds = secs
    c.status, c.reason, c.message = "True", reason, message
    c.last_update_time.seconds = secs


def condition_summary(csr) -> str:
    """kubectl's CONDITION column (extractCSRStatus): Denied, else Approved,
    else Pending; then ",Failed" and ",Issued"."""
    types = {c.type for c in csr.status.conditions}
    out = DENIED if DENIED in types else APPROVED if APPROVED in types else "Pending"
    if FAILED in types:
        out += ",Failed"
    if csr.status.certificate:
        out += ",Issued"
    return out


# ---------------------------------------------------------------- certificates

def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise DecodeError(f"invalid certificate: {exc}") from exc


def validate_certificate_pem(pem: bytes) -> str:
    """'' when pem is one or more CERTIFICATE blocks without headers (text around them
    is allowed), else the reason (Kubernetes' validateCertificate wording)."""
    blocks = 0
    for m in _PEM_BLOCK.finditer(pem):
        if m.group(1) != b"CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{m.group(1).decode(errors="replace")}"'
        if b":" in m.group(2).split(b"\n\n")[0] and b"\n\n" in m.group(2):
            return "no PEM block headers are permitted"
        try:
            x509.load_pem_x509_certificate(m.group(0))
        except ValueError as exc:
            return f"x509: malformed certificate ({exc})"
        blocks += 1
    return "" if blocks else "must contain at least one CERTIFICATE PEM block"


def usage_names(cert: x509.Certificate) -> list[str]:
    """A certificate's key usages in CSR words (`digital signature`, `client auth`)."""
    out = []
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        for attr, word in (("digital_signature", "digital signature"), ("key_encipherment", "key encipherment"),
                           ("content_commitment", "content commitment"), ("key_cert_sign", "cert sign")):
            if getattr(ku, attr):
                out.append(word)
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        names = {ExtendedKeyUsageOID.CLIENT_AUTH: "client auth", ExtendedKeyUsageOID.SERVER_AUTH: "server auth"}
        out += [names[o] for o in eku if o in names]
    except x509.ExtensionNotFound:
        pass
    return out
