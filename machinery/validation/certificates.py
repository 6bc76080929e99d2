"""CertificateSigningRequest validation (Kubernetes'
pkg/apis/certificates/validation: validateCertificateSigningRequest,
ValidateSignerName, validateConditions, validateCertificate and
validateCertificateSigningRequestUpdate for the object and its `status`
and `approval` subresources).

Names are free beyond the path-segment rules ("We don't care what you call
your certificate requests."). On updates:

- Approved, Denied and Failed conditions are never removed;
- Approved and Denied are added or changed only through `approval`;
- status.certificate is set only through `status`, and never changed once
  set; an unchanged certificate is not validated again.
"""
from __future__ import annotations

from machinery import csr as csrs
from machinery.errors import FieldError, duplicate, forbidden, invalid, not_supported, required, too_long
from machinery.validation.common import is_dns1123_label, is_dns1123_subdomain

CERT_DATA = "<certificate data>"
SIGNER_FORM = "must be a fully qualified domain and path of the form 'example.com/signer-name'"
TRUE_ONLY = (csrs.APPROVED, csrs.DENIED, csrs.FAILED)
DECISIONS = (csrs.APPROVED, csrs.DENIED)


def name_rule(name: str) -> list[str]:
    """ValidateCertificateRequestName accepts any name; what remains are the
    path-segment rules every name meets (IsValidPathSegmentName)."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def _labels(path: str, segment: str, parts, check) -> list[FieldError]:
    for lbl in parts:
        problems = check(lbl)
        if problems:         # one label's errors only: the rest would repeat them
            return [invalid(path, segment, f'validating label "{lbl}": {p}') for p in problems]
    return []


def validate_signer_name(name: str, path: str = "spec.signerName") -> list[FieldError]:
    if not name:
        return [required(path, "")]
    segments = name.split("/")
    if len(segments) != 2:
        return [invalid(path, name, SIGNER_FORM)]
    domain, signer = segments
    errs = [too_long(path, 253)] if len(domain) > 253 else []
    labels = domain.split(".")
    errs += _labels(path, domain, labels, is_dns1123_label)
    if len(labels) < 2:
        errs.append(invalid(path, domain, "should be a domain with at least two segments separated by dots"))
    errs += _labels(path, signer, signer.split("."), is_dns1123_subdomain)
    if len(name) > 253 + 253 + 63 + 1 + 1:
        errs.append(too_long(path, 253 + 253 + 63 + 1 + 1))
    return errs


def _validate_conditions(csr) -> list[FieldError]:
    errs, seen, decided = [], set(), set()
    for i, c in enumerate(csr.status.conditions):
        p = f"status.conditions[{i}]"
        if not c.type:
            errs.append(required(f"{p}.type", ""))
        allowed = ["True"] if c.type in TRUE_ONLY else ["False", "True", "Unknown"]
        if not c.status:
            errs.append(required(f"{p}.status", ""))
        elif c.status not in allowed:
            errs.append(not_supported(f"{p}.status", c.status, allowed))
        if c.type in DECISIONS:
            decided.add(c.type)
            if len(decided) == 2:
                errs.append(invalid(f"{p}.type", c.type, "Approved and Denied conditions are mutually exclusive"))
        if c.type in seen:
            errs.append(duplicate(f"{p}.type", c.type))
        seen.add(c.type)
    return errs


def validate_csr(csr, old=None) -> list[FieldError]:
    """validateCertificateSigningRequest: the request, usages, signer, duration, conditions, certificate."""
    spec, errs = csr.spec, []
    try:
        csrs.parse_request(spec.request)
    except csrs.BadRequestPEM as exc:
        errs.append(invalid("spec.request", "<request data>", str(exc)))
    if not spec.usages:
        errs.append(required("spec.usages", ""))
    for i, u in enumerate(spec.usages):
        if u not in csrs.ALL_USAGES:
            errs.append(not_supported(f"spec.usages[{i}]", u, sorted(csrs.ALL_USAGES)))
    seen = set()
    for i, u in enumerate(spec.usages):
        if u in seen:
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
    errs += _validate_conditions(csr)
    unchanged = old is not None and csr.status.certificate == old.status.certificate
    if csr.status.certificate and not unchanged:
        why = csrs.validate_certificate_pem(csr.status.certificate)
        if why:
            errs.append(invalid("status.certificate", CERT_DATA, why))
    return errs


def _of_type(csr, ctype: str) -> list:
    return [c for c in csr.status.conditions if c.type == ctype]


def validate_csr_update(new, old, sub: str = "") -> list[FieldError]:
    """The update rules of the object (sub ""), `status` or `approval`."""
    errs = []
    for t in TRUE_ONLY:
        if len(_of_type(new, t)) < len(_of_type(old, t)):
            errs.append(forbidden("status.conditions", f'updates may not remove a condition of type "{t}"'))
    if sub != "approval":
        for t in DECISIONS:
            was, now = _of_type(old, t), _of_type(new, t)
            if len(now) > len(was):
                errs.append(forbidden("status.conditions", f'updates may not add a condition of type "{t}"'))
            elif len(now) == len(was) and now != was:
                errs.append(forbidden("status.conditions", f'updates may not modify a condition of type "{t}"'))
    if new.status.certificate != old.status.certificate:
        if sub != "status":
            errs.append(forbidden("status.certificate", "updates may not set certificate content"))
        elif old.status.certificate:
            errs.append(forbidden("status.certificate", "updates may not modify existing certificate content"))
    return errs
