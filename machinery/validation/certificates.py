"""CertificateSigningRequest validation (Kubernetes'
pkg/apis/certificates/validation: validateCertificateSigningRequest,
ValidateSignerName, validateConditions and the update rules of the spec,
the status and the approval subresources)."""
from __future__ import annotations

from machinery import csr as csrs
from machinery.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from machinery.validation.common import IMMUTABLE_MSG, is_dns1123_subdomain, is_qualified_name

CERT_DATA = "<certificate data>"
SIGNER_FORM = "must be a fully qualified domain and path of the form 'example.com/signer-name'"
TERMINAL = (csrs.APPROVED, csrs.DENIED, csrs.FAILED)


def validate_signer_name(name: str, path: str = "spec.signerName") -> list[FieldError]:
    if not name:
        return [required(path, "")]
    parts = name.split("/")
    if len(parts) != 2:
        return [invalid(path, name, SIGNER_FORM)]
    domain, signer = parts
    errs = []
    if len(domain.split(".")) < 2:
        errs.append(invalid(path, name, "should be a domain with at least two segments separated by dots"))
    else:
        errs += [invalid(path, name, m) for m in is_dns1123_subdomain(domain)]
    if not signer or is_qualified_name(signer):
        errs.append(invalid(path, name, "validation for the path segment failed, please check the path "
                                        "segment requirements"))
    return errs


def _validate_conditions(csr) -> list[FieldError]:
    errs, seen = [], set()
    for i, c in enumerate(csr.status.conditions):
        p = f"status.conditions[{i}]"
        if not c.type:
            errs.append(required(f"{p}.type", ""))
        if c.type in TERMINAL and c.status != "True":
            errs.append(not_supported(f"{p}.status", c.status, ["True"]))
        elif c.status not in ("True", "False", "Unknown"):
            errs.append(not_supported(f"{p}.status", c.status, ["False", "True", "Unknown"]))
        if c.type in seen:
            errs.append(duplicate(f"{p}.type", c.type))
        seen.add(c.type)
    if csrs.is_approved(csr) and csrs.is_denied(csr):
        errs.append(invalid("status.conditions", "[...]", "Approved and Denied conditions are mutually exclusive"))
    return errs


def _validate_certificate(csr) -> list[FieldError]:
    cert = csr.status.certificate
    if not cert:
        return []
    why = csrs.validate_certificate_pem(cert)
    errs = [invalid("status.certificate", CERT_DATA, why)] if why else []
    if not csrs.is_approved(csr):
        errs.append(invalid("status.certificate", CERT_DATA,
                            "certificate may only be set when an Approved condition exists"))
    if csrs.is_failed(csr):
        errs.append(invalid("status.certificate", CERT_DATA,
                            "certificate may not be set when a Failed condition exists"))
    return errs


def validate_csr(csr) -> list[FieldError]:
    spec, errs = csr.spec, []
    try:
        csrs.parse_request(spec.request)
    except csrs.BadRequestPEM as exc:
        errs.append(invalid("spec.request", "<request data>", str(exc)))
    if not spec.usages:
        errs.append(required("spec.usages", ""))
    seen = set()
    for i, u in enumerate(spec.usages):
        if u not in csrs.ALL_USAGES:
            errs.append(not_supported(f"spec.usages[{i}]", u, sorted(csrs.ALL_USAGES)))
        elif u in seen:
            errs.append(duplicate(f"spec.usages[{i}]", u))
        seen.add(u)
    if spec.signer_name == csrs.LEGACY_UNKNOWN:
        errs.append(invalid("spec.signerName", spec.signer_name,
                            "the legacy signerName is not allowed via this API version"))
    else:
        errs += validate_signer_name(spec.signer_name)
    if spec.HasField("expiration_seconds") and spec.expiration_seconds < csrs.MIN_EXPIRATION_SECONDS:
        errs.append(invalid("spec.expirationSeconds", spec.expiration_seconds,
                            "may not specify a duration less than 600 seconds (10 minutes)"))
    return errs + _validate_conditions(csr) + _validate_certificate(csr)


def validate_csr_update(new, old) -> list[FieldError]:
    """The spec is immutable (ValidateImmutableField on the whole spec)."""
    if new.spec == old.spec:
        return []
    return [invalid("spec", "{...}", IMMUTABLE_MSG)]


def validate_csr_status(new, old) -> list[FieldError]:
    """Status and approval updates: conditions and the certificate are well formed,
    terminal conditions are never removed, an issued certificate never changes."""
    errs = _validate_conditions(new) + _validate_certificate(new)
    have = {c.type for c in new.status.conditions}
    for c in old.status.conditions:
        if c.type in TERMINAL and c.type not in have:
            errs.append(forbidden("status.conditions", f'updates may not remove a condition of type "{c.type}"'))
    if old.status.certificate and new.status.certificate != old.status.certificate:
        errs.append(forbidden("status.certificate", "updates may not modify existing certificate content"))
    return errs
