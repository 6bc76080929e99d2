"""Security context validation (pkg/apis/core/validation: ValidateSecurityContext,
validatePodSpecSecurityContext, validateSeccompProfileField, validateSysctls).

API validation checks only the shape, as Kubernetes' does: ids in range,
seccomp profile type and its localhostProfile, sysctl names (format,
duplicates, no network sysctls with hostNetwork) and the contradictions
`allowPrivilegeEscalation: false` with `privileged: true` or CAP_SYS_ADMIN.
Whether a sysctl is *safe* is the node's decision (the kubelet's sysctl
allowlist, nodeagent/security.py), and whether a pod may be privileged is
Pod Security Admission's (apiserver/podsecurity/).
"""
from __future__ import annotations

import re

from machinery.errors import FieldError, duplicate, invalid, not_supported, required

MAX_ID = 2**31 - 1
SECCOMP_TYPES = ("Localhost", "RuntimeDefault", "Unconfined")
FS_GROUP_CHANGE_POLICIES = ("OnRootMismatch", "Always")
SYSCTL_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_FMT = rf"({SYSCTL_SEGMENT}[\./])*{SYSCTL_SEGMENT}"
SYSCTL_MAX_LENGTH = 253
_SYSCTL_RE = re.compile(f"^{SYSCTL_FMT}$")
# sysctls that live in the network namespace (the kubelet's namespacedby: net.*)
NET_SYSCTL_PREFIX = "net."


def _id(msg_path: str, value: int) -> list[FieldError]:
    if 0 <= value <= MAX_ID:
        return []
    return [invalid(msg_path, value, f"must be between 0 and {MAX_ID}, inclusive")]


def _shared(sc, path: str) -> list[FieldError]:
    """The fields pod and container security contexts share: user, group, seccomp profile."""
    errs: list[FieldError] = []
    for f, j in (("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup")):
        if sc.HasField(f):
            errs += _id(f"{path}.{j}", getattr(sc, f))
    if sc.HasField("seccomp_profile"):
        errs += validate_seccomp_profile(sc.seccomp_profile, f"{path}.seccompProfile")
    return errs


def validate_seccomp_profile(sp, path: str) -> list[FieldError]:
    if sp.type == "Localhost":
        if not sp.HasField("localhost_profile"):
            return [required(f"{path}.localhostProfile", "must be set when seccomp type is Localhost")]
        return validate_local_descending_path(sp.localhost_profile, f"{path}.localhostProfile")
    if sp.type in ("RuntimeDefault", "Unconfined"):
        if sp.HasField("localhost_profile"):
            return [invalid(f"{path}.localhostProfile", sp.localhost_profile,
                            "can only be set when seccomp type is Localhost")]
        return []
    if not sp.type:
        return [required(f"{path}.type", "type is required when seccompProfile is set")]
    return [not_supported(f"{path}.type", sp.type, SECCOMP_TYPES)]


def validate_local_descending_path(target: str, path: str) -> list[FieldError]:
    if target.startswith("/"):
        return [invalid(path, target, "must be a relative path")]
    if ".." in re.split(r"[/\\]", target):
        return [invalid(path, target, "must not contain '..'")]
    return []


def validate_sysctls(sysctls, host_network: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, s in enumerate(sysctls):
        p = f"{path}[{i}].name"
        if not s.name:
            errs.append(required(p, ""))
        elif len(s.name) > SYSCTL_MAX_LENGTH or not _SYSCTL_RE.match(s.name):
            errs.append(invalid(p, s.name, f"must have at most {SYSCTL_MAX_LENGTH} characters and match regex "
                                           f"{SYSCTL_FMT}"))
        elif s.name in names:
            errs.append(duplicate(p, s.name))
        if host_network and s.name.replace("/", ".").startswith(NET_SYSCTL_PREFIX):
            errs.append(invalid(p, s.name, "may not be specified when 'hostNetwork' is true"))
        names.add(s.name)
    return errs


def validate_pod_security_context(spec, path: str) -> list[FieldError]:
    """spec.securityContext (validatePodSpecSecurityContext)."""
    if not spec.HasField("security_context"):
        return []
    sc, p = spec.security_context, f"{path}.securityContext"
    errs = _shared(sc, p)
    if sc.HasField("fs_group"):
        errs += _id(f"{p}.fsGroup", sc.fs_group)
    for i, g in enumerate(sc.supplemental_groups):
        errs += _id(f"{p}.supplementalGroups[{i}]", g)
    if sc.HasField("fs_group_change_policy") and sc.fs_group_change_policy not in FS_GROUP_CHANGE_POLICIES:
        errs.append(not_supported(f"{p}.fsGroupChangePolicy", sc.fs_group_change_policy, FS_GROUP_CHANGE_POLICIES))
    errs += validate_sysctls(sc.sysctls, spec.host_network, f"{p}.sysctls")
    return errs


def validate_security_context(c, path: str) -> list[FieldError]:
    """containers[i].securityContext (ValidateSecurityContext)."""
    if not c.HasField("security_context"):
        return []
    sc, p = c.security_context, f"{path}.securityContext"
    errs = _shared(sc, p)
    if sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation:
        if sc.HasField("privileged") and sc.privileged:
            errs.append(FieldError("Invalid", p, detail="cannot set `allowPrivilegeEscalation` to false and "
                                                        "`privileged` to true"))
        if "CAP_SYS_ADMIN" in sc.capabilities.add:
            errs.append(FieldError("Invalid", p, detail="cannot set `allowPrivilegeEscalation` to false and "
                                                        "`capabilities.Add` CAP_SYS_ADMIN"))
    return errs
