"""CertificateSigningRequests (pkg/apis/certificates/validation): the PEM
request must be a signed "CERTIFICATE REQUEST", the signer a qualified
name, usages from Kubernetes' set, expirationSeconds at least 10 minutes;
conditions Approved/Denied/Failed are "True", Approved and Denied exclude
each other, neither may be removed, and an issued certificate (PEM
CERTIFICATE blocks) never changes."""
from __future__ import annotations

from cryptography import x509

from machinery.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from machinery.validation.common import each, is_qualified_name

USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
          "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
          "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
TRUE_ONLY = ("Approved", "Denied", "Failed")


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """The CSR of a PEM "CERTIFICATE REQUEST" block; ValueError with Kubernetes' wording."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise ValueError(f"x509: malformed certificate request: {exc}") from exc
    if not csr.is_signature_valid:
        raise ValueError("x509: certificate request signature is invalid")
    return csr


def validate_csr(csr) -> list[FieldError]:
    spec, errs = csr.spec, []
    try:
        parse_request(spec.request)
    except ValueError as exc:
        errs.append(invalid("spec.request", "<omitted>" if spec.request else "", str(exc)))
    if not spec.signer_name:
        errs.append(required("spec.signerName", ""))
    elif "/" not in spec.signer_name:
        errs.append(invalid("spec.signerName", spec.signer_name,
                            "must be a fully qualified domain and path of the form 'example.com/signer-name'"))
    else:
        errs += each("spec.signerName", spec.signer_name, is_qualified_name(spec.signer_name))
    if not spec.usages:
        errs.append(required("spec.usages", "usages must be provided"))
    for i, u in enumerate(spec.usages):
        if u not in USAGES:
            errs.append(not_supported(f"spec.usages[{i}]", u, USAGES))
    if spec.HasField("expiration_seconds") and spec.expiration_seconds < 600:
        errs.append(invalid("spec.expirationSeconds", spec.expiration_seconds,
                            "may not specify a duration less than 600 seconds (10 minutes)"))
    return errs + validate_csr_status(csr)


def validate_csr_status(csr) -> list[FieldError]:
    errs, seen = [], set()
    for i, c in enumerate(csr.status.conditions):
        p = f"status.conditions[{i}]"
        if not c.type:
            errs.append(required(f"{p}.type", ""))
        if c.type in seen and c.type in TRUE_ONLY:
            errs.append(duplicate(f"{p}.type", c.type))
        seen.add(c.type)
        if c.type in TRUE_ONLY and c.status != "True":
            errs.append(not_supported(f"{p}.status", c.status, ("True",)))
    if {"Approved", "Denied"} <= seen:
        errs.append(invalid("status.conditions", "", "Approved and Denied conditions are mutually exclusive"))
    cert = csr.status.certificate
    if cert:
        try:
            x509.load_pem_x509_certificates(cert)
        except ValueError:
            errs.append(invalid("status.certificate", "<certificate data>",
                                "must contain at least one CERTIFICATE PEM block"))
    return errs


def validate_csr_status_update(new, old) -> list[FieldError]:
    errs = validate_csr_status(new)
    kept = {c.type for c in new.status.conditions}
    for t in ("Approved", "Denied", "Failed"):
        if t in {c.type for c in old.status.conditions} and t not in kept:
            errs.append(forbidden("status.conditions", f'updates may not remove a condition of type "{t}"'))
    if old.status.certificate and new.status.certificate != old.status.certificate:
        errs.append(forbidden("status.certificate", "updates may not modify existing certificate content"))
    return errs
