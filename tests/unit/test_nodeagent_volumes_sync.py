"""A pod's volumes in its sync step (hollow runtime, FakeClient): FailedMount, then the container starts."""
from __future__ import annotations

import asyncio

from machinery import codec, kinds
from nodeagent.syncpod import PodSync
from tests.unit.test_nodeagent_syncpod import node


async def test_missing_config_map_volume_waits_in_container_creating_then_starts(tmp_path):
    agent = node(tmp_path)
    pod = await agent.client.create(codec.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1.36",
                                                   "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}]}],
                 "volumes": [{"name": "conf", "configMap": {"name": "app"}}]}}))
    sync = PodSync(agent, pod)
    await sync.sync_pod()
    rec = sync.records["c"]
    assert rec.cid is None and rec.waiting_reason == "ContainerCreating"
    assert agent.recorder.seen == [("FailedMount", 'MountVolume.SetUp failed for volume "conf" : configmap "app" '
                                                   "not found")]
    await sync.sync_pod()
    assert agent.recorder.reasons().count("FailedMount") == 1          # once per message
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "app", "default"
    await agent.client.create(cm)
    for _ in range(100):                       # the watch delivers the new object, the next sync starts
        await asyncio.sleep(0.01)
        await sync.sync_pod()
        if sync.records["c"].cid:
            break
    assert sync.records["c"].cid is not None and "Started" in agent.recorder.reasons()
    sync.volumes.close(sync.pod_dir)
