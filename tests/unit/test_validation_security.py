"""securityContext validation: Kubernetes' field paths, types and messages
(ValidateSecurityContext, validatePodSpecSecurityContext, validateSysctls)."""
import pytest

from tests.unit.validation_objects import C0, T0, build, errors

SC = f"{C0}.securityContext"
PSC = "spec.securityContext"

CASES = [
    ([(f"{SC}.runAsUser", -1)], "Invalid", "spec.containers[0].securityContext.runAsUser",
     "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"),
    ([(f"{SC}.runAsGroup", 2**31)], "Invalid", "spec.containers[0].securityContext.runAsGroup", None),
    ([(f"{PSC}.runAsUser", -5)], "Invalid", "spec.securityContext.runAsUser", None),
    ([(f"{PSC}.fsGroup", -1)], "Invalid", "spec.securityContext.fsGroup", None),
    ([(f"{PSC}.supplementalGroups", [1, -2])], "Invalid", "spec.securityContext.supplementalGroups[1]", None),
    ([(f"{PSC}.fsGroupChangePolicy", "Never")], "NotSupported", "spec.securityContext.fsGroupChangePolicy",
     'supported values: "OnRootMismatch", "Always"'),
    ([(f"{SC}.seccompProfile", {"type": "Localhost"})], "Required",
     "spec.containers[0].securityContext.seccompProfile.localhostProfile",
     "spec.containers[0].securityContext.seccompProfile.localhostProfile: Required value: "
     "must be set when seccomp type is Localhost"),
    ([(f"{SC}.seccompProfile", {"type": "Localhost", "localhostProfile": "/etc/x.json"})], "Invalid",
     "spec.containers[0].securityContext.seccompProfile.localhostProfile", "must be a relative path"),
    ([(f"{SC}.seccompProfile", {"type": "Localhost", "localhostProfile": "a/../../x.json"})], "Invalid",
     "spec.containers[0].securityContext.seccompProfile.localhostProfile", "must not contain '..'"),
    ([(f"{PSC}.seccompProfile", {"type": "RuntimeDefault", "localhostProfile": "x.json"})], "Invalid",
     "spec.securityContext.seccompProfile.localhostProfile", "can only be set when seccomp type is Localhost"),
    ([(f"{PSC}.seccompProfile", {"type": "Docker"})], "NotSupported", "spec.securityContext.seccompProfile.type",
     'supported values: "Localhost", "RuntimeDefault", "Unconfined"'),
    ([(f"{PSC}.seccompProfile", {})], "Required", "spec.securityContext.seccompProfile.type",
     "type is required when seccompProfile is set"),
    ([(f"{SC}.privileged", True), (f"{SC}.allowPrivilegeEscalation", False)], "Invalid",
     "spec.containers[0].securityContext",
     "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
    ([(f"{SC}.capabilities", {"add": ["CAP_SYS_ADMIN"]}), (f"{SC}.allowPrivilegeEscalation", False)], "Invalid",
     "spec.containers[0].securityContext", "`capabilities.Add` CAP_SYS_ADMIN"),
    ([(f"{PSC}.sysctls", [{"name": "Kernel.X", "value": "1"}])], "Invalid", "spec.securityContext.sysctls[0].name",
     "must have at most 253 characters and match regex"),
    ([(f"{PSC}.sysctls", [{"name": "", "value": "1"}])], "Required", "spec.securityContext.sysctls[0].name", None),
    ([(f"{PSC}.sysctls", [{"name": "kernel.shm_rmid_forced", "value": "1"},
                          {"name": "kernel.shm_rmid_forced", "value": "0"}])],
     "Duplicate", "spec.securityContext.sysctls[1].name", None),
    ([("spec.hostNetwork", True), (f"{PSC}.sysctls", [{"name": "net.ipv4.tcp_syncookies", "value": "1"}])],
     "Invalid", "spec.securityContext.sysctls[0].name", "may not be specified when 'hostNetwork' is true"),
]


@pytest.mark.parametrize("edits, etype, field, detail", CASES, ids=[f"{c[2]}:{i}" for i, c in enumerate(CASES)])
def test_invalid_security_context(edits, etype, field, detail):
    errs = errors(build("pod", *edits))
    assert [(e.type, e.field) for e in errs] == [(etype, field)], [str(e) for e in errs]
    if detail:
        assert detail in str(errs[0])


def test_a_full_security_context_is_valid_in_pods_and_templates():
    sc = {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
          "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
          "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}}
    psc = {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [4000], "fsGroupChangePolicy": "OnRootMismatch",
           "seccompProfile": {"type": "RuntimeDefault"},
           "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
                       {"name": "kernel/shm_rmid_forced", "value": "1"}]}
    assert [str(e) for e in errors(build("pod", (SC, sc), (PSC, psc)))] == []
    assert [str(e) for e in errors(build("deploy", (f"{T0}.securityContext", sc),
                                         ("spec.template.spec.securityContext", psc)))] == []


def test_template_errors_carry_the_template_path():
    errs = errors(build("deploy", (f"{T0}.securityContext.runAsUser", -1)))
    assert [e.field for e in errs] == ["spec.template.spec.containers[0].securityContext.runAsUser"]
