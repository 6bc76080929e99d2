"""Init containers and native sidecars in a pod's sync steps (nodeagent/syncpod.py,
nodeagent/initcontainers.py), driven on the hollow runtime like test_nodeagent_syncpod.py.

Cases follow the kubelet's TestComputePodActionsWithInitContainers and
TestComputePodActionsWithRestartableInitContainers (kuberuntime_manager_test.go):
init containers one after another, a failed one restarted under OnFailure/Always
and failing the pod under Never, a sidecar started in its turn (its startupProbe
gating the next), kept running, and stopped after the app containers.
"""
from __future__ import annotations

from machinery import codec
from machinery.pb import core_pb2
from nodeagent import initcontainers
from nodeagent.probes import STARTUP
from nodeagent.syncpod import PodSync
from tests.unit.test_nodeagent_syncpod import api_status, exit_seen, node

SIDECAR = {"name": "proxy", "image": "busybox:1.36", "restartPolicy": "Always"}


async def created(agent, inits, restart="Always", apps=("app",)):
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                           "spec": {"nodeName": "n1", "restartPolicy": restart, "initContainers": inits,
                                    "containers": [{"name": n, "image": "busybox:1.36"} for n in apps]}})
    return await agent.client.create(pod)


def inits(*names):
    return [{"name": n, "image": "busybox:1.36"} for n in names]


async def test_init_containers_run_one_after_another_then_the_app(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, inits("one", "two")))
    await sync.sync_pod()
    r = sync.records
    assert r["one"].cid and not r["two"].cid and not r["app"].cid
    st = await api_status(agent)
    assert st.phase == "Pending"
    assert st.init_container_statuses[0].state.HasField("running")
    assert st.init_container_statuses[1].state.waiting.reason == "PodInitializing"
    assert st.container_statuses[0].state.waiting.reason == "PodInitializing"
    cond = {c.type: c for c in st.conditions}["Initialized"]
    assert cond.status == "False" and cond.reason == "ContainersNotInitialized"
    assert cond.message == "containers with incomplete status: [one two]"
    await exit_seen(sync, r["one"].cid, 0)
    await sync.sync_pod()
    assert r["two"].cid and not r["app"].cid and r["one"].restart_count == 0
    await exit_seen(sync, r["two"].cid, 0)
    await sync.sync_pod()
    assert r["app"].cid and (await agent.runtime.state(r["app"].cid)).status == "running"
    st = await api_status(agent)
    assert st.phase == "Running" and {c.type: c.status for c in st.conditions}["Initialized"] == "True"
    assert [c.ready for c in st.init_container_statuses] == [True, True]
    assert [c.state.terminated.reason for c in st.init_container_statuses] == ["Completed", "Completed"]
    await sync.sync_pod()                        # completed init containers never run again
    assert r["one"].restart_count == 0 and r["two"].restart_count == 0
    sync.watchers.stop_all()


async def test_a_failed_init_container_backs_off_and_is_retried(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, inits("one", "two"), restart="OnFailure"))
    await sync.sync_pod()
    first = sync.records["one"].cid
    await exit_seen(sync, first, 3)
    await sync.sync_pod()
    rec = sync.records["one"]
    assert rec.waiting_reason == "CrashLoopBackOff" and not sync.records["two"].cid
    st = await api_status(agent)
    assert st.phase == "Pending"
    assert st.init_container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert st.init_container_statuses[0].last_state.terminated.exit_code == 3
    rec.backoff_until = 0
    await sync.sync_pod()
    assert rec.restart_count == 1 and rec.cid != first and not sync.records["two"].cid
    sync.watchers.stop_all()


async def test_a_failed_init_container_fails_the_pod_under_never(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, [SIDECAR] + inits("one"), restart="Never"))
    await sync.sync_pod()
    assert sync.records["one"].cid                 # the sidecar is up without a startup probe
    await exit_seen(sync, sync.records["one"].cid, 1)
    await sync.sync_pod()
    assert sync.records["one"].restart_count == 0 and not sync.records["app"].cid
    assert (await agent.runtime.state(sync.records["proxy"].cid)).status == "exited"
    st = await api_status(agent)
    assert st.phase == "Failed" and st.init_container_statuses[1].state.terminated.reason == "Error"


async def test_sidecar_startup_probe_gates_the_next_init_container(tmp_path):
    agent = node(tmp_path)
    probe = {"startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3600, "initialDelaySeconds": 3600}}
    sync = PodSync(agent, await created(agent, [{**SIDECAR, **probe}] + inits("one")))
    await sync.sync_pod()
    side = sync.records["proxy"]
    assert side.cid and not side.started and not sync.records["one"].cid
    sync._probe_result("proxy", side.cid, STARTUP, True, "")   # what the probe reports
    await sync.sync_pod()
    assert sync.records["one"].cid and not sync.records["app"].cid
    sync.watchers.stop_all()


async def test_sidecar_is_kept_running_beside_the_app_and_restarted(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, [SIDECAR]))
    await sync.sync_pod()
    side, app = sync.records["proxy"], sync.records["app"]
    assert side.cid and app.cid                   # a sidecar without a startup probe lets the app start
    st = await api_status(agent)
    assert st.init_container_statuses[0].started and st.init_container_statuses[0].ready
    assert {c.type: c.status for c in st.conditions}["Ready"] == "True"
    first = side.cid
    await exit_seen(sync, first, 0)               # a sidecar is restarted even after exit code 0
    await sync.sync_pod()
    side.backoff_until = 0
    await sync.sync_pod()
    assert side.restart_count == 1 and side.cid != first
    assert (await agent.runtime.state(app.cid)).status == "running" and app.restart_count == 0
    sync.watchers.stop_all()


async def test_sidecars_stop_after_the_app_containers_finished(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, [SIDECAR], restart="Never"))
    await sync.sync_pod()
    await exit_seen(sync, sync.records["app"].cid, 0)
    await sync.sync_pod()
    assert (await agent.runtime.state(sync.records["proxy"].cid)).status == "exited"
    await sync.sync_pod()
    assert sync.records["proxy"].restart_count == 0
    assert (await api_status(agent)).phase == "Succeeded"


async def test_on_deletion_app_containers_stop_before_sidecars_in_reverse_order(tmp_path):
    agent = node(tmp_path)
    second = {**SIDECAR, "name": "logger"}
    sync = PodSync(agent, await created(agent, [SIDECAR, second], apps=("a", "b")))
    await sync.sync_pod()
    order: list[str] = []
    names = {r.cid: n for n, r in sync.records.items()}
    real_stop = agent.runtime.stop

    async def stop(cid, grace=10):
        order.append(names[cid])
        return await real_stop(cid, grace)
    agent.runtime.stop = stop
    await sync.sync_terminating_pod()
    assert sorted(order[:2]) == ["a", "b"] and order[2:] == ["logger", "proxy"]


async def test_agent_restart_does_not_rerun_init_containers(tmp_path):
    agent = node(tmp_path)
    pod = await created(agent, inits("one"))
    sync = PodSync(agent, pod)
    await sync.sync_pod()
    await exit_seen(sync, sync.records["one"].cid, 0)
    await sync.sync_pod()
    sync.watchers.stop_all()
    again = PodSync(agent, pod, adopted=await agent.runtime.list())
    await again.sync_pod()
    assert again.records["one"].restart_count == 0 and again.records["app"].restart_count == 0
    again.watchers.stop_all()


def test_restart_policy_per_container():
    pod = core_pb2.Pod(spec=core_pb2.PodSpec(restart_policy="Never"))
    side = core_pb2.Container(name="s", restart_policy="Always")
    plain = core_pb2.Container(name="i")
    assert initcontainers.restart_policy(pod, side, True) == "Always"
    assert initcontainers.restart_policy(pod, plain, True) == "Never"
    assert initcontainers.restart_policy(pod, plain, False) == "Never"
    pod.spec.restart_policy = "Always"
    assert initcontainers.restart_policy(pod, plain, True) == "OnFailure"
    assert initcontainers.restart_policy(pod, plain, False) == "Always"


def test_init_container_env_references_are_watched():
    from nodeagent.configwatch import references
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                           "spec": {"initContainers": [{"name": "i", "image": "busybox", "envFrom": [
                               {"configMapRef": {"name": "settings"}}], "env": [{"name": "K", "valueFrom": {
                                   "secretKeyRef": {"name": "creds", "key": "k"}}}]}],
                                    "containers": [{"name": "a", "image": "busybox"}]}})
    assert {name for _, name in references(pod)} == {"settings", "creds"}
