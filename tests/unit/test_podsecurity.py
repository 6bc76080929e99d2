"""Pod Security Admission (apiserver/podsecurity/): the checks of each level
with Kubernetes' messages (k8s.io/pod-security-admission/policy check_*.go),
the namespace labels, and the admission plugin against a fake etcd read side."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from apiserver import admission
from apiserver.podsecurity import PodSecurity, checks, policy_for
from apiserver.podsecurity.policy import LATEST, LevelVersion
from machinery import codec, errors, kinds
from tests.unit.fake_storage import FakeStorage

ENFORCE = "pod-security.kubernetes.io/enforce"


def pod(name="x", namespace="default", annotations=None, **spec):
    spec.setdefault("containers", [{"name": "app", "image": "busybox"}])
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
                            "spec": spec})


def c(name="app", **sc):
    return {"name": name, "image": "busybox", **({"securityContext": sc} if sc else {})}


RESTRICTED_OK = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [c(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]})]}

BASELINE = [
    (pod(hostNetwork=True), 'host namespaces (hostNetwork=true)'),
    (pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), 'hostPath volumes (volume "root")'),
    (pod(volumes=[{"name": "a", "hostPath": {"path": "/a"}}, {"name": "b", "hostPath": {"path": "/b"}}]),
     'hostPath volumes (volumes "a", "b")'),
    (pod(containers=[c(privileged=True)]), 'privileged (container "app" must not set securityContext.privileged=true)'),
    (pod(containers=[c(capabilities={"add": ["NET_ADMIN", "SYS_TIME", "CHOWN"]})]),
     'non-default capabilities (container "app" must not include "NET_ADMIN", "SYS_TIME" in '
     'securityContext.capabilities.add)'),
    (pod(containers=[{"name": "app", "image": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]}]),
     'hostPort (container "app" uses hostPort 8080)'),
    (pod(containers=[c(seccompProfile={"type": "Unconfined"})]),
     'seccompProfile (container "app" must not set securityContext.seccompProfile.type to "Unconfined")'),
    (pod(securityContext={"seccompProfile": {"type": "Unconfined"}}),
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
    (pod(annotations={"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
     'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")'),
    (pod(annotations={"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}),
     'forbidden AppArmor profile (annotation must not set AppArmor profile type to '
     '"container.apparmor.security.beta.kubernetes.io/app="unconfined"")'),
    (pod(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"},
                                      {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}),
     'forbidden sysctls (kernel.msgmax)'),
    (pod(containers=[{"name": "app", "image": "b", "livenessProbe": {"tcpSocket": {"port": 80, "host": "10.0.0.1"}}}]),
     'probe or lifecycle host (container "app" uses probe or lifecycle host "10.0.0.1")'),
    (pod(hostNetwork=True, volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
     'host namespaces (hostNetwork=true), hostPath volumes (volume "root")'),
]

RESTRICTED = [
    (pod(**RESTRICTED_OK), ""),
    (pod(), 'allowPrivilegeEscalation != false (container "app" must set '
            'securityContext.allowPrivilegeEscalation=false), '
            'unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]), '
            'runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true), '
            'seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" '
            'or "Localhost")'),
    (pod(**{**RESTRICTED_OK, "securityContext": {**RESTRICTED_OK["securityContext"], "runAsUser": 0}}),
     'runAsUser=0 (pod must not set runAsUser=0)'),
    (pod(**{**RESTRICTED_OK, "securityContext": {"runAsNonRoot": False, "seccompProfile": {"type": "RuntimeDefault"}}}),
     'runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)'),
    (pod(**{**RESTRICTED_OK, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
     'restricted volume types (volume "root" uses restricted volume type "hostPath")'),
    (pod(**{**RESTRICTED_OK, "containers": [c(allowPrivilegeEscalation=False,
                                              capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]})]}),
     'unrestricted capabilities (container "app" must not include "CHOWN" in securityContext.capabilities.add)'),
]


@pytest.mark.parametrize("obj, want", BASELINE, ids=[w.split(" (")[0] + str(i) for i, (_, w) in enumerate(BASELINE)])
def test_baseline_checks(obj, want):
    assert checks.detail(checks.evaluate("baseline", LATEST, obj.metadata, obj.spec)) == want


@pytest.mark.parametrize("obj, want", RESTRICTED, ids=[str(i) for i in range(len(RESTRICTED))])
def test_restricted_checks(obj, want):
    assert checks.detail(checks.evaluate("restricted", LATEST, obj.metadata, obj.spec)) == want


def test_privileged_level_and_versions():
    p = pod(hostNetwork=True, securityContext={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1 2 3"}]})
    assert checks.evaluate("privileged", LATEST, p.metadata, p.spec) == []
    assert checks.reasons(checks.evaluate("baseline", 31, p.metadata, p.spec)) == "host namespaces, forbidden sysctls"
    assert checks.reasons(checks.evaluate("baseline", 32, p.metadata, p.spec)) == "host namespaces"
    # runAsUser=0 is a restricted check from v1.23 on
    root = pod(**{**RESTRICTED_OK, "securityContext": {**RESTRICTED_OK["securityContext"], "runAsUser": 0}})
    assert checks.evaluate("restricted", 22, root.metadata, root.spec) == []


@pytest.mark.parametrize("labels, enforce, warn, errs", [
    ({}, "baseline:latest", "privileged:latest", []),
    ({ENFORCE: "privileged"}, "privileged:latest", "privileged:latest", []),
    ({ENFORCE: "restricted", ENFORCE + "-version": "v1.28"}, "restricted:v1.28", "restricted:v1.28", []),
    ({ENFORCE: "restricted", "pod-security.kubernetes.io/warn": "baseline"}, "restricted:latest",
     "baseline:latest", []),
    ({ENFORCE: "strict"}, "restricted:latest", "privileged:latest",
     ['metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": '
      'must be one of privileged, baseline, restricted']),
    ({ENFORCE + "-version": "1.28"}, "baseline:latest", "privileged:latest",
     ['metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "1.28": '
      'must be "latest" or "v1.x"']),
])
def test_namespace_labels(labels, enforce, warn, errs):
    p, found = policy_for(labels)
    assert (str(p.enforce), str(p.warn), [str(e) for e in found]) == (enforce, warn, errs)


# ------------------------------------------------------------------ the plugin

def ns(name, **labels):
    return codec.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})


def admit(obj, *stored, op=admission.CREATE, old=None, subresource=""):
    store = SimpleNamespace(storage=FakeStorage(*stored))
    req = admission.Request(op, kinds.of(obj), obj, old, subresource, store)
    return asyncio.run(PodSecurity().validate(req))


def test_baseline_is_enforced_without_a_label():
    bad = pod(name="x", hostNetwork=True, volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    with pytest.raises(errors.Forbidden) as exc:
        admit(bad, ns("default"))
    assert exc.value.message == ('pods "x" is forbidden: violates PodSecurity "baseline:latest": '
                                 'host namespaces (hostNetwork=true), hostPath volumes (volume "root")')
    assert exc.value.to_status().code == 403


def test_privileged_namespace_admits_and_restricted_refuses_root():
    bad = pod(namespace="kube-system", containers=[c(privileged=True)])
    assert admit(bad, ns("kube-system", **{ENFORCE: "privileged"})) == []
    with pytest.raises(errors.Forbidden, match='violates PodSecurity "restricted:latest": .*runAsNonRoot != true'):
        admit(pod(namespace="locked"), ns("locked", **{ENFORCE: "restricted"}))
    assert admit(pod(namespace="locked", **RESTRICTED_OK), ns("locked", **{ENFORCE: "restricted"})) == []


def test_warn_level_returns_warnings():
    got = admit(pod(), ns("default", **{"pod-security.kubernetes.io/warn": "restricted"}))
    assert len(got) == 1 and got[0].startswith('would violate PodSecurity "restricted:latest": '
                                               'allowPrivilegeEscalation != false')


def test_templates_only_warn():
    deploy = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": "d", "namespace": "default"},
                              "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                                  "metadata": {"labels": {"a": "b"}},
                                  "spec": {"hostNetwork": True, "containers": [c()]}}}})
    assert admit(deploy, ns("default")) == []
    warned = admit(deploy, ns("default", **{ENFORCE: "baseline", "pod-security.kubernetes.io/warn": "baseline"}))
    assert warned == ['would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)']
    cron = codec.from_dict({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "p"},
                            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
                                "spec": {"containers": [c(privileged=True)]}}}}}})
    assert admit(cron, ns("p", **{"pod-security.kubernetes.io/warn": "baseline"})) == [
        'would violate PodSecurity "baseline:latest": privileged (container "app" must not set '
        'securityContext.privileged=true)']


def test_pod_updates_checked_only_when_images_change_and_status_never():
    old = pod(hostNetwork=True)
    assert admit(pod(hostNetwork=True), ns("default"), op=admission.UPDATE, old=old) == []
    assert admit(pod(hostNetwork=True), ns("default"), op=admission.UPDATE, old=old, subresource="status") == []
    changed = pod(hostNetwork=True, containers=[{"name": "app", "image": "nginx"}])
    with pytest.raises(errors.Forbidden):
        admit(changed, ns("default"), op=admission.UPDATE, old=old)


def test_namespace_labels_validated_and_stricter_enforce_warns_about_pods():
    with pytest.raises(errors.Invalid, match=r'Namespace "n" is invalid: .*must be one of privileged'):
        admit(ns("n", **{ENFORCE: "bogus"}))
    pods = [pod(name=f"p{i}", namespace="n") for i in range(3)] + [pod(name="h", namespace="n", hostNetwork=True)]
    old = ns("n", **{ENFORCE: "privileged"})
    got = admit(ns("n", **{ENFORCE: "restricted"}), *pods, op=admission.UPDATE, old=old)
    assert got == ['existing pods in namespace "n" violate the new PodSecurity enforce level "restricted:latest"',
                   'h: host namespaces, allowPrivilegeEscalation != false, unrestricted capabilities, '
                   'runAsNonRoot != true, seccompProfile',
                   'p0 (and 2 other pods): allowPrivilegeEscalation != false, unrestricted capabilities, '
                   'runAsNonRoot != true, seccompProfile']
    assert admit(ns("n", **{ENFORCE: "privileged"}), *pods, op=admission.UPDATE, old=ns("n")) == []


def test_level_version_strings():
    assert str(LevelVersion("baseline", 30)) == "baseline:v1.30" and str(LevelVersion("restricted")) == \
        "restricted:latest"
