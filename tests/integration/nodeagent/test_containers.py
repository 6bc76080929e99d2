"""Pods with several containers, volumes, limits and config errors, on a real agent."""
from __future__ import annotations

import asyncio

import pytest

from machinery.pb import core_pb2
from tests.integration.nodeagent.conftest import (cid_of, cstatus, in_netns, make_pod, needs_root, node_ready,
                                                  pod_gone, pod_running, pod_where, wait_for)

pytestmark = [pytest.mark.root, needs_root]


@pytest.fixture
async def node(api, make_node):
    n = make_node()
    await node_ready(api, n)
    return n


async def test_two_containers_share_localhost_and_emptydir(api, node):
    await api.create(make_pod(
        "duo", node,
        {"name": "web", "image": "kctl/echo", "ports": [{"name": "http", "containerPort": 8080}],
         "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
        {"name": "side", "image": "busybox", "command": ["sh", "-c", "echo from-side > /data/hello; sleep 3600"],
         "volumeMounts": [{"name": "shared", "mountPath": "/data"}]},
        volumes=[{"name": "shared", "emptyDir": {}}]))
    pod = await pod_running(api, "duo", node)
    side, web = cid_of(pod, "side"), cid_of(pod, "web")
    await wait_for(lambda: node.runc_exec(side, "sh", "-c", "timeout 5 wget -q -O - http://127.0.0.1:8080/")
                   .stdout.strip() == "duo", 30, "side container reaches web on localhost", node)
    # emptyDir: written by one container, read by the other
    assert node.runc_exec(web, "cat", "/shared/hello").stdout.strip() == "from-side"
    # the pod is reachable from the node on its IP
    out = in_netns(node.netns, "/bin/busybox", "timeout", "10", "/bin/busybox", "wget", "-q", "-O", "-",
                   f"http://{pod.status.pod_ip}:8080/")
    assert out.stdout.strip() == "duo", out        # (the server is up: localhost answered above)
    # different pid namespaces per container, same net namespace
    p1, p2 = node.container_pid(side), node.container_pid(web)
    import os
    assert os.readlink(f"/proc/{p1}/ns/net") == os.readlink(f"/proc/{p2}/ns/net")
    assert os.readlink(f"/proc/{p1}/ns/pid") != os.readlink(f"/proc/{p2}/ns/pid")
    await api.delete(core_pb2.Pod, "duo", "default", grace_period=5)
    await pod_gone(api, "duo", node)


async def test_memory_limit_oomkilled(api, node):
    await api.create(make_pod(
        "hog", node,
        {"name": "hog", "image": "busybox",
         # a 64 MiB shell variable in a 16 MiB cgroup
         "command": ["sh", "-c", "sleep 1; x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"],
         "resources": {"limits": {"memory": "16Mi"}}}, restartPolicy="Never"))
    pod = await pod_where(api, "hog", lambda p: p.status.phase == "Failed", "phase Failed", node)
    cs = cstatus(pod, "hog")
    assert cs.state.terminated.reason == "OOMKilled", cs
    assert cs.state.terminated.exit_code == 137
    assert not cs.ready
    await api.delete(core_pb2.Pod, "hog", "default")
    await pod_gone(api, "hog", node)


async def test_restart_policy_never_and_onfailure(api, node):
    await api.create(make_pod("ok", node, {"name": "c", "image": "busybox", "command": ["true"]},
                              restartPolicy="OnFailure"))
    await api.create(make_pod("bad", node, {"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 3"]},
                              restartPolicy="Never"))
    ok = await pod_where(api, "ok", lambda p: p.status.phase == "Succeeded", "Succeeded", node)
    assert cstatus(ok, "c").state.terminated.reason == "Completed"
    bad = await pod_where(api, "bad", lambda p: p.status.phase == "Failed", "Failed", node)
    t = cstatus(bad, "c").state.terminated
    assert (t.reason, t.exit_code) == ("Error", 3)
    assert cstatus(bad, "c").restart_count == 0
    for name in ("ok", "bad"):
        await api.delete(core_pb2.Pod, name, "default")
        await pod_gone(api, name, node)


async def test_secret_env_and_volumes_wait_with_config_error(api, node):
    await api.create(make_pod("cfg", node, {
        "name": "c", "image": "busybox", "command": ["sleep", "3600"],
        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}))
    pod = await pod_where(api, "cfg", lambda p: p.status.container_statuses and cstatus(p, "c").state.waiting.reason
                          == "CreateContainerConfigError", "CreateContainerConfigError", node)
    assert cstatus(pod, "c").state.waiting.message == 'secret "db" not found'
    assert pod.status.phase == "Pending"
    await api.create(make_pod("pvc", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]},
                              volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]))
    pod = await pod_where(api, "pvc", lambda p: p.status.container_statuses and cstatus(p, "c").state.waiting.reason
                          == "ContainerCreating", "ContainerCreating", node)

    async def failed_mount():
        events = (await api.list("Event", "default"))[0]
        return any(e.involved_object.name == "pvc" and e.reason == "FailedMount" and e.message ==
                   'MountVolume.SetUp failed for volume "data" : persistentvolumeclaim "data" not found' for e in events)
    await wait_for(failed_mount, 30, "FailedMount event", node)
    for name in ("cfg", "pvc"):
        await api.delete(core_pb2.Pod, name, "default")
        await pod_gone(api, name, node)


async def test_bad_image_errimagepull_then_backoff(api, node):
    seen: list[str] = []

    async def watch():
        async for ev in api.watch(core_pb2.Pod, "default", field_selector="metadata.name=nope"):
            for c in ev.object.status.container_statuses if ev.object else []:
                if c.state.waiting.reason and (not seen or seen[-1] != c.state.waiting.reason):
                    seen.append(c.state.waiting.reason)
    watcher = asyncio.create_task(watch())
    try:
        await api.create(make_pod("nope", node, {"name": "c", "image": "kctl/does-not-exist:1"}))
        pod = await pod_where(api, "nope", lambda p: "ImagePullBackOff" in seen and p.status.container_statuses,
                              "ImagePullBackOff", node)
    finally:
        watcher.cancel()
    assert "ErrImagePull" in seen and seen.index("ErrImagePull") < seen.index("ImagePullBackOff"), seen
    assert pod.status.phase == "Pending"
    events, _ = await api.list("Event", "default")
    failed = [e for e in events if e.involved_object.name == "nope" and e.reason == "Failed"]
    assert any("manifest unknown" in e.message for e in failed), failed     # the registry's own message
    assert {(e.source.component, e.source.host) for e in failed} == {("kubelet", node.name)}   # From: kubelet
    await api.delete(core_pb2.Pod, "nope", "default")
    await pod_gone(api, "nope", node)


async def test_host_network_pod_uses_the_node_netns(api, node, privileged_default):
    await api.create(make_pod("hostnet", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]},
                              hostNetwork=True))
    pod = await pod_running(api, "hostnet", node)
    assert pod.status.pod_ip == node.ip
    cid = cid_of(pod, "c")
    import os
    assert os.stat(f"/proc/{node.container_pid(cid)}/ns/net").st_ino == os.stat(node.netns_path).st_ino
    assert f"inet {node.ip}/24" in node.runc_exec(cid, "ip", "-4", "addr").stdout
    await api.delete(core_pb2.Pod, "hostnet", "default", grace_period=1)
    await pod_gone(api, "hostnet", node)
    assert not node.leftovers()
