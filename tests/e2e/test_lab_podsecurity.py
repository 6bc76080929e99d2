"""Pod hardening end to end on a real 3-node lab (issue 14's Acceptance).

* Pod Security Admission enforces `baseline` where a namespace says
  nothing: hostPath, privileged and hostNetwork pods are refused with
  Kubernetes' message (`pods "x" is forbidden: violates PodSecurity
  "baseline:latest": ...`), printed by `kctl apply`;
* a namespace labelled `restricted` refuses a pod that would run as root,
  and admits one that says runAsNonRoot, runAsUser, drop ALL, no privilege
  escalation and RuntimeDefault seccomp; `warn=restricted` makes `kctl apply`
  print `Warning: would violate PodSecurity "restricted:latest": ...`;
* inside containers (real runc on the lab's nodes): with
  `capabilities.drop: [ALL]` root cannot chown; with
  `readOnlyRootFilesystem` nothing can write /; every container runs
  under the RuntimeDefault seccomp profile unless it says otherwise, so
  `unshare -U` is refused (and allowed with `Unconfined`);
  `runAsUser: 1000` shows in `id`.
"""
from __future__ import annotations

import os

import pytest

from tests.e2e.lab_fixtures import lab, missing_tools, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "ps"


def pod_yaml(name: str, command: str, namespace: str = "default", sc: str = "{}", psc: str = "{}",
             extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  restartPolicy: Never
  securityContext: {psc}
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", {command!r}]
    securityContext: {sc}
{extra}"""


def finished_log(lab, name: str, namespace: str = "default") -> str:
    def done():
        p = lab.api(lambda c: c.get("Pod", name, namespace))
        return p.status.phase in ("Succeeded", "Failed") and p
    wait_for(f"pod {name} to finish", done, 120, interval=1)
    return lab.kctl("logs", name, "-n", namespace).stdout.strip()


REFUSED = [
    ("hostpath", 'hostPath volumes (volume "root")',
     "  volumes: [{name: root, hostPath: {path: /}}]"),
    ("privileged", 'privileged (container "c" must not set securityContext.privileged=true)', ""),
    ("hostnet", "host namespaces (hostNetwork=true)", "  hostNetwork: true"),
]


@pytest.mark.parametrize("name, why, extra", REFUSED, ids=[r[0] for r in REFUSED])
def test_baseline_refuses_host_access_by_default(lab, name, why, extra):
    sc = "{privileged: true}" if name == "privileged" else "{}"
    res = lab.kctl("apply", "-f", "-", input=pod_yaml(name, "true", sc=sc, extra=extra), check=False)
    assert res.returncode != 0
    assert f'pods "{name}" is forbidden: violates PodSecurity "baseline:latest": {why}' in res.stderr, res.stderr
    assert lab.kctl("get", "pod", name, check=False).returncode != 0


def test_restricted_namespace_refuses_root_and_admits_a_hardened_pod(lab):
    lab.kctl("create", "namespace", "locked")
    lab.kctl("label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted")
    res = lab.kctl("apply", "-f", "-", input=pod_yaml("root", "id", namespace="locked"), check=False)
    assert res.returncode != 0
    assert 'pods "root" is forbidden: violates PodSecurity "restricted:latest": ' in res.stderr, res.stderr
    assert "runAsNonRoot != true" in res.stderr
    hardened = pod_yaml("app", "id", namespace="locked",
                        sc="{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}",
                        psc="{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}")
    lab.kctl("apply", "-f", "-", input=hardened)
    assert finished_log(lab, "app", "locked").startswith("uid=1000")


def test_warn_label_prints_warnings(lab):
    lab.kctl("create", "namespace", "watched")
    lab.kctl("label", "namespace", "watched", "pod-security.kubernetes.io/warn=restricted")
    res = lab.kctl("apply", "-f", "-", input=pod_yaml("w", "true", namespace="watched"))
    assert 'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false' \
        in res.stderr, res.stderr


def test_drop_all_capabilities_cannot_chown(lab):
    lab.kctl("apply", "-f", "-", input=pod_yaml("nocaps", "touch /tmp/f; chown 1234 /tmp/f; echo rc=$?",
                                                 sc="{capabilities: {drop: [ALL]}}"))
    out = finished_log(lab, "nocaps")
    assert "Operation not permitted" in out and "rc=1" in out, out


def test_read_only_root_filesystem(lab):
    lab.kctl("apply", "-f", "-", input=pod_yaml("rofs", "touch /x; echo rc=$?", sc="{readOnlyRootFilesystem: true}"))
    out = finished_log(lab, "rofs")
    assert "Read-only file system" in out and "rc=1" in out, out


def test_runtime_default_seccomp_refuses_unshare(lab):
    lab.kctl("apply", "-f", "-", input=pod_yaml("sandboxed", "grep Seccomp: /proc/self/status; unshare -U true; "
                                                             "echo rc=$?"))
    out = finished_log(lab, "sandboxed")
    assert "Seccomp:\t2" in out and "Operation not permitted" in out and "rc=1" in out, out
    # an explicit Unconfined is still possible (baseline refuses it: a privileged namespace)
    lab.kctl("create", "namespace", "open")
    lab.kctl("label", "namespace", "open", "pod-security.kubernetes.io/enforce=privileged")
    lab.kctl("apply", "-f", "-", input=pod_yaml("free", "unshare -U true; echo rc=$?", namespace="open",
                                                 sc="{seccompProfile: {type: Unconfined}}"))
    assert finished_log(lab, "free", "open") == "rc=0"


def test_run_as_user_shows_in_id(lab):
    lab.kctl("apply", "-f", "-", input=pod_yaml("user", "id", psc="{runAsUser: 1000}"))
    assert finished_log(lab, "user").startswith("uid=1000 gid=0")
