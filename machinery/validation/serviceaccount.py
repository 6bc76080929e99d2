"""ServiceAccounts, TokenRequests and projected token sources
(pkg/apis/core/validation ValidateServiceAccount, ValidateTokenRequest and
the serviceAccountToken branch of validateProjectionSources), with
Kubernetes' paths and messages."""
from __future__ import annotations

from machinery.errors import FieldError, invalid, not_supported, required

MIN_EXPIRATION = 10 * 60         # ten minutes
MAX_EXPIRATION = 1 << 32
BOUND_KINDS = ("Pod", "Secret")


def validate_expiration(seconds: int, path: str) -> list[FieldError]:
    if seconds < MIN_EXPIRATION:
        return [invalid(path, seconds, "may not specify a duration less than 10 minutes")]
    if seconds > MAX_EXPIRATION:
        return [invalid(path, seconds, "may not specify a duration larger than 2^32 seconds")]
    return []


def validate_service_account(sa) -> list[FieldError]:
    return [required(f"secrets[{i}].name", "") for i, s in enumerate(sa.secrets) if not s.name]


def validate_token_request(tr) -> list[FieldError]:
    """The spec of a TokenRequest after defaulting (expirationSeconds set)."""
    errs = validate_expiration(tr.spec.expiration_seconds, "spec.expirationSeconds")
    ref = tr.spec.bound_object_ref
    if tr.spec.HasField("bound_object_ref"):
        if ref.kind not in BOUND_KINDS:
            errs.append(not_supported("spec.boundObjectRef.kind", ref.kind, BOUND_KINDS))
        if ref.api_version not in ("", "v1"):
            errs.append(not_supported("spec.boundObjectRef.apiVersion", ref.api_version, ("v1",)))
        if not ref.name:
            errs.append(required("spec.boundObjectRef.name", ""))
    return errs


def validate_token_projection(proj, path: str) -> list[FieldError]:
    """`path` is the projection's, e.g. spec.volumes[0].projected.sources[0].serviceAccountToken."""
    errs = validate_expiration(proj.expiration_seconds, f"{path}.expirationSeconds")
    if not proj.path:
        errs.append(required(f"{path}.path", ""))
    elif proj.path.startswith("/"):
        errs.append(invalid(f"{path}.path", proj.path, "must be a relative path"))
    elif ".." in proj.path.split("/"):
        errs.append(invalid(f"{path}.path", proj.path, "must not contain '..'"))
    return errs
