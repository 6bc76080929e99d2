"""Sync steps of one pod (nodeagent/syncpod.py) driven directly, without a pod worker loop.

Each test builds a ``PodSync`` on the hollow runtime, network and image store
(nodeagent/fake_runtime.py) and a FakeClient, calls one step, and looks at
the container records, the runtime, the API and the events.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import threading
from types import SimpleNamespace

import pytest

from machinery import codec
from machinery.fakeclient import FakeClient
from machinery.pb import core_pb2
from nodeagent import podspec, syncpod
from nodeagent.containers import ContainerConfig
from nodeagent.errors import ImagePullError
from nodeagent.fake_runtime import FakeImageStore, FakeNetwork, FakeRuntime
from nodeagent.status import ContainerRecord
from nodeagent.syncpod import PodSync


class Events:
    """The recorder's interface; keeps (reason, message) of every event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def event(self, obj, type_: str, reason: str, message: str) -> None:
        self.seen.append((reason, message))

    def reasons(self) -> list[str]:
        return [r for r, _ in self.seen]


class FailingImages(FakeImageStore):
    async def pull(self, ref: str, policy: str = "IfNotPresent"):
        raise ImagePullError("ErrImagePull", f'failed to pull image "{ref}": manifest unknown')


def node(tmp_path, images=None):
    return SimpleNamespace(runtime=FakeRuntime(), images=images or FakeImageStore(),
                           network=FakeNetwork("10.9.0.0/24"), recorder=Events(), client=FakeClient(),
                           node_ip="192.0.2.10", root_dir=str(tmp_path), fake=True, crashloop_base=10.0)


async def created(agent, name="p", restart="Always", **container):
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"nodeName": "n1", "restartPolicy": restart,
                                    "containers": [{"name": "c", "image": "busybox:1.36", **container}]}})
    return await agent.client.create(pod)


async def exit_seen(sync, cid, code=0, oom=False):
    """Make the instance exit and let its exit waiter (a watcher task) see it, as it would
    before waking the worker."""
    sync.agent.runtime.exit_container(cid, code, oom)
    for _ in range(10):
        if not sync.watchers.awaiting_exit(cid):
            return
        await asyncio.sleep(0)
    raise AssertionError("the exit waiter did not see the exit")


async def api_status(agent, name="p") -> core_pb2.PodStatus:
    return (await agent.client.get(core_pb2.Pod, name, "default")).status


async def test_first_sync_creates_sandbox_and_container_and_writes_running(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent))
    await sync.sync_pod()
    rec = sync.records["c"]
    assert rec.cid == syncpod.container_id(sync.uid, "c", 0) and rec.restart_count == 0
    assert (await agent.runtime.state(rec.cid)).status == "running"
    assert sync.sandbox.ip == "10.9.0.2"
    st = await api_status(agent)
    assert st.phase == "Running" and st.pod_ip == "10.9.0.2" and st.host_ip == "192.0.2.10"
    assert st.container_statuses[0].state.HasField("running") and st.container_statuses[0].ready
    assert agent.recorder.reasons() == ["Pulling", "Pulled", "Created", "Started"]
    sync.watchers.stop_all()


async def test_an_exit_backs_off_then_restarts_keeping_the_previous_instance(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent))
    await sync.sync_pod()
    first = sync.records["c"].cid
    await exit_seen(sync, first, 1)
    wait = await sync.sync_pod()
    rec = sync.records["c"]
    assert rec.waiting_reason == "CrashLoopBackOff" and rec.backoff == 10.0 and 0 < wait <= 10.0
    st = await api_status(agent)
    assert st.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert st.container_statuses[0].last_state.terminated.exit_code == 1
    rec.backoff_until = 0                       # the back-off is over
    await sync.sync_pod()
    assert rec.restart_count == 1 and rec.prev_cid == first and rec.cid != first
    assert rec.waiting_reason == "" and (await agent.runtime.state(rec.cid)).status == "running"
    assert "BackOff" in agent.recorder.reasons()
    sync.watchers.stop_all()


async def test_restart_policy_never_leaves_a_finished_container_alone(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, restart="Never"))
    await sync.sync_pod()
    first = sync.records["c"].cid
    await exit_seen(sync, first, 0)
    await sync.sync_pod()
    await sync.sync_pod()
    assert sync.records["c"].cid == first and sync.records["c"].restart_count == 0
    st = await api_status(agent)
    assert st.phase == "Succeeded" and st.container_statuses[0].state.terminated.reason == "Completed"


async def test_failed_probe_kill_restarts_the_container(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent))
    await sync.sync_pod()
    rec = sync.records["c"]
    first = rec.cid
    rec.kill_requested, rec.kill_reason = first, "failed liveness probe"     # what a probe reports
    await sync.sync_pod()
    assert ("Killing", "Container c failed liveness probe, will be restarted") in agent.recorder.seen
    assert (await agent.runtime.state(first)).status == "exited"
    await exit_seen(sync, first)                # the exit waiter wakes the worker: the next round
    await sync.sync_pod()
    assert rec.restart_count == 0 and rec.waiting_reason == "CrashLoopBackOff"
    sync.watchers.stop_all()


async def test_pull_failure_is_err_image_pull_then_image_pull_backoff(tmp_path):
    agent = node(tmp_path, images=FailingImages())
    sync = PodSync(agent, await created(agent))
    await sync.sync_pod()
    rec = sync.records["c"]
    assert rec.cid is None and rec.waiting_reason == "ErrImagePull" and "manifest unknown" in rec.waiting_message
    assert rec.pull_backoff == 10.0 and rec.pull_failures == 1
    assert (await api_status(agent)).container_statuses[0].state.waiting.reason == "ErrImagePull"
    await sync.sync_pod()                       # within the back-off: no new pull
    assert rec.waiting_reason == "ImagePullBackOff" and rec.pull_failures == 1
    assert agent.recorder.reasons().count("Pulling") == 1


async def test_container_config_error_waits_without_a_container(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, env=[{"name": "X", "valueFrom": {
        "configMapKeyRef": {"name": "m", "key": "k"}}}]))
    assert await sync.sync_pod() <= 10.0
    rec = sync.records["c"]
    assert rec.cid is None and rec.waiting_reason == "CreateContainerConfigError" and rec.waiting_message == 'configmap "m" not found'
    assert await agent.runtime.list() == []
    assert (await api_status(agent)).phase == "Pending"


async def test_adopted_running_container_is_kept(tmp_path):
    agent = node(tmp_path)
    pod = await created(agent)
    cid = syncpod.container_id(pod.metadata.uid, "c", 3)
    info = await agent.runtime.create_and_start(ContainerConfig(cid, "c", ["sleep"], labels={
        podspec.LABEL_POD_UID: pod.metadata.uid, podspec.LABEL_CONTAINER: "c", podspec.LABEL_RESTART: "3"}))
    sync = PodSync(agent, pod, adopted=[info])
    await sync.sync_pod()
    rec = sync.records["c"]
    assert (rec.cid, rec.restart_count, rec.ready) == (cid, 3, True)
    assert [i.id for i in await agent.runtime.list()] == [cid]
    assert "Created" not in agent.recorder.reasons()
    sync.watchers.stop_all()


async def test_termination_stops_removes_and_deletes(tmp_path, monkeypatch):
    removed = []                 # (path, removed on the event loop's thread?)
    rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, *a, **kw: (
        removed.append((str(path), threading.current_thread() is threading.main_thread())), rmtree(path, *a, **kw)))
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent))
    await sync.sync_pod()
    await exit_seen(sync, sync.records["c"].cid, 1)
    await sync.sync_pod()
    sync.records["c"].backoff_until = 0
    await sync.sync_pod()                       # a restart: two instances exist now
    running = sync.records["c"].cid
    await sync.sync_terminating_pod()
    assert (await agent.runtime.state(running)).status == "exited"
    assert ("Killing", "Stopping container c") in agent.recorder.seen
    assert not (await api_status(agent)).container_statuses[0].state.HasField("running")
    os.makedirs(os.path.join(sync.pod_dir, "volumes", "scratch"))     # an emptyDir, say
    await sync.sync_terminated_pod()
    assert await agent.runtime.list() == [] and agent.network.list_allocations() == {}
    assert agent.client.objects(core_pb2.Pod) == []
    assert not os.path.exists(sync.pod_dir)
    assert (sync.pod_dir, False) in removed      # the pod dir (emptyDirs) went in a worker thread


def test_restart_policies():
    def rec(code):
        return ContainerRecord("c", state=SimpleNamespace(exit_code=code))
    pods = {p: codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                "spec": {"restartPolicy": p} if p else {}}) for p in ("Always", "OnFailure", "Never", "")}
    assert [syncpod.should_restart(pods[p], rec(0)) for p in ("Always", "OnFailure", "Never", "")] == \
        [True, False, False, True]
    assert [syncpod.should_restart(pods[p], rec(2)) for p in ("Always", "OnFailure", "Never")] == [True, True, False]


@pytest.mark.parametrize("previous, ran, want", [
    (0, 1, 10.0), (10.0, 1, 20.0), (160.0, 1, 300.0), (300.0, 1, 300.0), (80.0, 600, 10.0)])
def test_crashloop_backoff(previous, ran, want):
    assert syncpod.crashloop_backoff(previous, ran, 10.0) == want


def test_probe_grace_prefers_the_probe_setting():
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "terminationGracePeriodSeconds": 7, "containers": [
            {"name": "a", "image": "x", "livenessProbe": {"exec": {"command": ["true"]},
                                                          "terminationGracePeriodSeconds": 2}},
            {"name": "b", "image": "x"}]}})
    a, b = pod.spec.containers
    assert (syncpod.probe_grace(pod, a), syncpod.probe_grace(pod, b)) == (2.0, 7.0)
