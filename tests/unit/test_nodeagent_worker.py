"""The agent and its pod workers on a FakeClient with the hollow (fake) runtime: lifecycle logic."""
from __future__ import annotations

import asyncio
import contextlib
import time

from machinery import codec
from machinery.fakeclient import FakeClient
from machinery.pb import core_pb2
from nodeagent.main import build_agent


def pod(name, restart="Always", **extra):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                            "spec": {"nodeName": "n1", "restartPolicy": restart,
                                     "containers": [{"name": "c", "image": "busybox", **extra}]}})


@contextlib.asynccontextmanager
async def running(agent):
    """The agent's run() as a task for the length of the block."""
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


async def status_of(client, name):
    return (await client.get(core_pb2.Pod, name, "default")).status


async def test_crash_restart_backoff_and_deletion(tmp_path):
    client = FakeClient()
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24", crashloop_base=0.2, heartbeat_interval=0.2)
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(pod("p"))
        st = await until(lambda: _running(client, "p"))
        assert st.pod_ip == "10.9.0.2" and st.host_ip == "192.0.2.10"
        w = next(iter(agent.workers.values()))
        first = w.records["c"].cid
        agent.runtime.exit_container(first, 1)
        st = await until(lambda: _waiting(client, "p", "CrashLoopBackOff"))
        assert st.container_statuses[0].last_state.terminated.exit_code == 1
        st = await until(lambda: _running(client, "p"))
        cs = st.container_statuses[0]
        assert cs.restart_count == 1 and cs.container_id != f"runc://{first}"
        agent.runtime.exit_container(w.records["c"].cid, 137, oom=True)
        st = await until(lambda: _waiting(client, "p", "CrashLoopBackOff"))
        assert st.container_statuses[0].last_state.terminated.reason == "OOMKilled"
        assert w.records["c"].backoff == 0.4                      # doubled

        await client.delete(core_pb2.Pod, "p", "default")          # graceful: the agent finishes it
        await until(lambda: not client.objects(core_pb2.Pod))
        assert agent.network.list_allocations() == {} and not agent.workers
        assert await agent.runtime.list() == []


async def test_never_and_config_error(tmp_path):
    client = FakeClient()
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24", crashloop_base=0.2)
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(pod("once", restart="Never"))
        await client.create(pod("cfg", env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}}]))
        await until(lambda: _running(client, "once"))
        w = next(w for w in agent.workers.values() if w.pod.metadata.name == "once")
        agent.runtime.exit_container(w.records["c"].cid, 0)
        st = await until(lambda: _phase(client, "once", "Succeeded"))
        assert st.container_statuses[0].state.terminated.reason == "Completed"
        st = await until(lambda: _waiting(client, "cfg", "CreateContainerConfigError"))
        assert st.container_statuses[0].state.waiting.message == 'configmap "m" not found' and st.phase == "Pending"


async def _running(client, name):
    st = await status_of(client, name)
    return st if st.phase == "Running" and st.container_statuses and st.container_statuses[0].state.HasField(
        "running") else None


async def _waiting(client, name, reason):
    st = await status_of(client, name)
    return st if st.container_statuses and st.container_statuses[0].state.waiting.reason == reason else None


async def _phase(client, name, phase):
    st = await status_of(client, name)
    return st if st.phase == phase else None


async def test_agent_restart_never_reruns_a_finished_pod(tmp_path):
    client = FakeClient()
    kw = dict(node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake", pod_cidr="10.9.0.0/24")
    agent = build_agent(client, **kw)
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(pod("job", restart="Never"))
        await until(lambda: _running(client, "job"))
        w = next(iter(agent.workers.values()))
        agent.runtime.exit_container(w.records["c"].cid, 0)
        await until(lambda: _phase(client, "job", "Succeeded"))
    # a new agent with an empty (fake) runtime: the containers are gone, the pod is finished
    agent2 = build_agent(client, **kw)
    async with running(agent2):
        await until(agent2.ready.is_set)
        await asyncio.sleep(0.3)
        assert await agent2.runtime.list() == []
        st = await status_of(client, "job")
        assert st.phase == "Succeeded" and st.container_statuses[0].state.terminated.reason == "Completed"


async def test_waits_for_pod_cidr_from_node_ipam(tmp_path):
    client = FakeClient()
    agent = build_agent(client, node_name="n7", node_ip="192.0.2.17", root_dir=str(tmp_path), runtime="fake",
                        status_interval=0.2)
    async with running(agent):
        node = await until(lambda: _node(client, "n7"))
        await asyncio.sleep(0.3)
        assert not agent.ready.is_set()
        ready = {c.type: c for c in (await client.get(core_pb2.Node, "n7")).status.conditions}["Ready"]
        assert (ready.status, ready.reason) == ("False", "NetworkNotReady")
        node = await client.get(core_pb2.Node, "n7")
        node.spec.pod_cidr = "10.44.3.0/24"                  # what the controller manager's node IPAM does
        await client.update(node)
        await until(agent.ready.is_set)
        await until(lambda: _node_ready(client, "n7"))
        await client.create(codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                                             "metadata": {"name": "p", "namespace": "default"},
                                             "spec": {"nodeName": "n7", "containers": [{"name": "c", "image": "x"}]}}))
        st = await until(lambda: _running(client, "p"))
        assert st.pod_ip.startswith("10.44.3.")


async def _node(client, name):
    try:
        return await client.get(core_pb2.Node, name)
    except Exception:  # noqa: BLE001
        return None


async def _node_ready(client, name):
    n = await client.get(core_pb2.Node, name)
    return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)


async def test_active_deadline_fails_the_pod(tmp_path):
    client = FakeClient()
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24")
    async with running(agent):
        await until(agent.ready.is_set)
        p = pod("deadline")
        p.spec.active_deadline_seconds = 1
        await client.create(p)
        await until(lambda: _running(client, "deadline"))
        st = await until(lambda: _phase(client, "deadline", "Failed"))
        assert st.reason == "DeadlineExceeded" and "deadline" in st.message
        assert not st.container_statuses[0].state.HasField("running")
        assert all(i.state.status == "exited" for i in await agent.runtime.list())


def _ready(st) -> str:
    return next((c.status for c in st.conditions if c.type == "Ready"), "")


async def test_status_rewritten_by_someone_else_is_put_right(tmp_path):
    """The node lifecycle controller marks pods Ready=False while the node is silent; the worker,
    seeing that foreign status in its cache, writes the computed one again."""
    client = FakeClient()
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24")
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(pod("p"))
        await until(lambda: _running(client, "p"))
        st = await until(lambda: _is_ready(client, "p"))
        before = {c.type: c.last_transition_time.ToNanoseconds() for c in st.conditions}
        writes = len([a for a in client.actions if a[:2] == ("update_status", "Pod")])
        p = await client.get(core_pb2.Pod, "p", "default")
        for c in p.status.conditions:
            if c.type in ("Ready", "ContainersReady"):
                c.status, c.reason, c.message = "False", "NodeNotReady", "Node n1 is not responding"
                c.last_transition_time.GetCurrentTime()
        await client.update_status(p)
        st = await until(lambda: _is_ready(client, "p"))
        ready = next(c for c in st.conditions if c.type == "Ready")
        assert ready.reason == "" and ready.message == ""
        assert ready.last_transition_time.ToNanoseconds() > before["Ready"]      # it transitioned again
        assert next(c for c in st.conditions if c.type == "PodScheduled").last_transition_time.ToNanoseconds() \
            == before["PodScheduled"]
        # one write puts it right, and the echo of that write causes no further writes
        await asyncio.sleep(0.5)
        assert len([a for a in client.actions if a[:2] == ("update_status", "Pod")]) == writes + 2


async def _is_ready(client, name):
    st = await status_of(client, name)
    return st if _ready(st) == "True" else None


def _cond(st, ctype):
    return next((c for c in st.conditions if c.type == ctype), None)


async def test_hollow_readiness_failures(tmp_path):
    """never-ready images and exec probes of ["false"] keep hollow pods Running but not Ready."""
    client = FakeClient()
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24", crashloop_base=0.2)
    probe = {"periodSeconds": 1, "failureThreshold": 1}
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(pod("plain-never", image="example/never-ready:1"))
        await client.create(pod("http-never", image="example/never-ready:1",
                                readinessProbe={"httpGet": {"port": 8080}, **probe}))
        await client.create(pod("exec-false", readinessProbe={"exec": {"command": ["false"]}, **probe}))
        await client.create(pod("exec-true", readinessProbe={"exec": {"command": ["true"]}, **probe}))
        await client.create(pod("http-ok", readinessProbe={"httpGet": {"port": 8080}, **probe}))
        await client.create(pod("live-false", livenessProbe={"exec": {"command": ["false"]}, **probe}))
        for name in ("exec-true", "http-ok"):          # hollow http probes succeed without any network
            st = await until(lambda n=name: _is_ready(client, n))
            assert st.phase == "Running"
        st = await until(lambda: _restarted(client, "live-false"))
        assert st.container_statuses[0].last_state.HasField("terminated")
        for name in ("plain-never", "http-never", "exec-false"):
            st = await status_of(client, name)
            assert st.phase == "Running" and st.container_statuses[0].state.HasField("running"), name
            assert not st.container_statuses[0].ready, name
            for ctype in ("Ready", "ContainersReady"):
                c = _cond(st, ctype)
                assert (c.status, c.reason) == ("False", "ContainersNotReady"), (name, ctype)
        reasons = {(e.involved_object.name, e.reason) for e in client.objects(core_pb2.Event)}
        assert ("http-never", "Unhealthy") in reasons and ("exec-false", "Unhealthy") in reasons


async def _restarted(client, name):
    st = await status_of(client, name)
    return st if st.container_statuses and st.container_statuses[0].restart_count >= 1 else None


async def test_hollow_agent_proxy_uses_fake_iptables(tmp_path):
    from nodeagent.iptables import FakeIptables
    client = FakeClient()
    assert build_agent(client, node_name="n0", node_ip="192.0.2.9", root_dir=str(tmp_path / "n0"),
                       runtime="fake").make_proxier is None          # hollow default: no proxy
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path / "n1"),
                        runtime="fake", pod_cidr="10.9.0.0/24", proxy="iptables", masquerade_cidr="192.0.2.0/24")
    async with running(agent):
        await until(agent.ready.is_set)
        assert isinstance(agent.proxier.runner, FakeIptables)
        await client.create(codec.from_dict({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
        es = await client.create(codec.from_dict({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.9.0.5"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
        await until(lambda: agent.proxier.applied_payload and "10.9.0.5:8080" in agent.proxier.applied_payload)
        # the applied slices' resourceVersion reaches the node's Lease (nodeagent/drain.py)
        await until(lambda: int(client.stored("Lease", "n1", "kube-node-lease").metadata.annotations.get(
            "kctl.io/proxy-applied-rv", "0")) >= int(es.metadata.resource_version))
        assert "192.0.2.0/24" in agent.proxier.applied_payload


async def test_first_probe_comes_after_the_status_showing_the_container(tmp_path):
    """The first readiness attempt waits for the worker's status write that shows the container
    running (the kubelet triggers it from UpdatePodStatus), so an app that starts listening while
    that write is under way is Ready at its first attempt: no failure, no Unhealthy event."""
    client = FakeClient()
    write = client.update_status

    async def slow_write(obj, **kw):            # a loaded apiserver: the write takes 50 ms
        await asyncio.sleep(0.05)
        return await write(obj, **kw)
    client.update_status = slow_write
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24")
    seen_at_probe = []
    probe = agent.runtime.probe

    async def recording_probe(kind, p, c, cid):
        st = (await client.get(core_pb2.Pod, "p", "default")).status
        seen_at_probe.append(bool(st.container_statuses) and st.container_statuses[0].state.HasField("running"))
        return await probe(kind, p, c, cid)
    agent.runtime.probe = recording_probe
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(pod("p", readinessProbe={"httpGet": {"port": 8080}, "periodSeconds": 10}))
        await until(lambda: _is_ready(client, "p"))
        assert seen_at_probe and seen_at_probe[0] is True
        assert len(seen_at_probe) == 1                   # Ready at the first attempt
        assert not [e for e in client.objects(core_pb2.Event) if e.reason == "Unhealthy"]
