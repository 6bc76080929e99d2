"""Pod Security Admission in a real apiserver: kube-system is created privileged,
every other namespace is enforced at baseline unless labelled, warnings reach the
gRPC client, and --pod-security-default-enforce changes the default."""
from __future__ import annotations

import pytest

from machinery import codec, errors

ENFORCE = "pod-security.kubernetes.io/enforce"


def hostnet_pod(namespace: str, name: str = "h"):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                            "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]}})


async def test_baseline_by_default_and_kube_system_privileged(client):
    ks = await client.get("Namespace", "kube-system")
    assert ks.metadata.labels[ENFORCE] == "privileged"
    with pytest.raises(errors.Forbidden) as exc:
        await client.create(hostnet_pod("default"))
    assert exc.value.message == ('pods "h" is forbidden: violates PodSecurity "baseline:latest": '
                                 'host namespaces (hostNetwork=true)')
    await client.create(hostnet_pod("kube-system"))
    assert client.warnings == []


async def test_labels_choose_the_level_and_warnings_reach_the_client(client):
    ns = codec.from_dict({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "team", "labels": {"pod-security.kubernetes.io/warn": "restricted"}}})
    await client.create(ns)
    await client.create(codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": "p", "namespace": "team"},
                                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    assert len(client.warnings) == 1 and client.warnings[0].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false')
    ns = await client.get("Namespace", "team")
    ns.metadata.labels[ENFORCE] = "restricted"
    await client.update(ns)
    assert client.warnings[:2] == ['existing pods in namespace "team" violate the new PodSecurity enforce level '
                                   '"restricted:latest"',
                                   "p: allowPrivilegeEscalation != false, unrestricted capabilities, "
                                   "runAsNonRoot != true, seccompProfile"]
    ns = await client.get("Namespace", "team")
    ns.metadata.labels[ENFORCE] = "strictest"
    with pytest.raises(errors.Invalid, match=r'must be one of privileged, baseline, restricted'):
        await client.update(ns)


@pytest.mark.apiserver_args("--pod-security-default-enforce", "privileged")
async def test_default_level_flag(client):
    await client.create(hostnet_pod("default"))
