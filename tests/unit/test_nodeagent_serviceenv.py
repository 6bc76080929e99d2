"""The `default/kubernetes` Service's env vars from the agent's watch (nodeagent/serviceenv.py):
no request per pod, a changed Service reaches the pods started afterwards, a missing Service
gives no variables, an unlisted cache is the kubelet's CreateContainerConfigError."""
from __future__ import annotations

import asyncio

import pytest

from machinery import errors, kinds
from machinery.fakeclient import FakeClient
from nodeagent.fake_runtime import FakeRuntime
from nodeagent.main import build_agent
from nodeagent.serviceenv import WATCH_TASK, ServiceEnv
from nodeagent.syncpod import PodSync
from tests.unit.test_nodeagent_syncpod import created, node
from tests.unit.test_nodeagent_worker import pod, running, until



class RecordingRuntime(FakeRuntime):
    """The hollow runtime, keeping the env of every container it started."""

    def __init__(self) -> None:
        super().__init__()
        self.env: dict[str, dict[str, str]] = {}

    async def create_and_start(self, cfg):
        self.env[cfg.id] = dict(kv.partition("=")[::2] for kv in cfg.env)
        return await super().create_and_start(cfg)


def kubernetes_service(ip="10.96.0.1", port=443):
    svc = kinds.new("Service")
    svc.metadata.name, svc.metadata.namespace = "kubernetes", "default"
    svc.spec.cluster_ip = ip
    svc.spec.ports.add(name="https", port=port, protocol="TCP")
    return svc


def service_requests(client) -> list[str]:
    return [verb for verb, kind, _, _ in client.actions if kind == "Service"]


async def watch_stopped() -> None:
    """Every task of the watch ends, cancelled (a watch left running makes this time out)."""
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == WATCH_TASK]
    assert tasks
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(t.cancelled() for t in tasks)


def agent_with_watch(tmp_path, **kw):
    agent = node(tmp_path)
    agent.runtime = RecordingRuntime()
    agent.service_env = ServiceEnv(agent.client, **kw)
    return agent


async def started_env(agent, name) -> dict[str, str]:
    sync = PodSync(agent, await created(agent, name))
    await sync.sync_pod()
    assert sync.records["c"].cid, sync.records["c"].waiting_message
    return agent.runtime.env[sync.records["c"].cid]


async def test_pods_get_the_service_env_from_the_watch_and_a_changed_service_reaches_the_next_pod(tmp_path):
    agent = agent_with_watch(tmp_path)
    client = agent.client
    client.seed(kubernetes_service())
    first = await started_env(agent, "p1")
    assert first["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and first["KUBERNETES_SERVICE_PORT"] == "443"
    assert first["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert (await started_env(agent, "p2"))["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert service_requests(client) == ["list"]       # one list (then a watch), no GET per pod

    await client.delete("Service", "kubernetes", "default")    # re-created: new ClusterIP and port
    await client.create(kubernetes_service("10.96.0.7", 6443))
    await until(lambda: agent.service_env.informer.get("default", "kubernetes").spec.cluster_ip == "10.96.0.7")
    third = await started_env(agent, "p3")
    assert third["KUBERNETES_SERVICE_HOST"] == "10.96.0.7" and third["KUBERNETES_SERVICE_PORT"] == "6443"
    assert "KUBERNETES_PORT_443_TCP" not in third and third["KUBERNETES_PORT"] == "tcp://10.96.0.7:6443"
    assert [v for v in service_requests(client) if v in ("get", "list")] == ["list"]
    agent.service_env.close()


async def test_without_the_service_containers_start_without_its_variables(tmp_path):
    agent = agent_with_watch(tmp_path)
    env = await started_env(agent, "p1")
    assert not [k for k in env if k.startswith("KUBERNETES_")]
    agent.client.seed(kubernetes_service())                     # created later: the next pod has it
    await until(lambda: agent.service_env.informer.get("default", "kubernetes") is not None)
    assert (await started_env(agent, "p2"))["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert "get" not in service_requests(agent.client)
    agent.service_env.close()


async def test_an_unlisted_service_cache_is_a_container_config_error_until_it_lists(tmp_path):
    agent = agent_with_watch(tmp_path, sync_timeout=0.05)
    agent.client.seed(kubernetes_service())
    agent.client.fail_next("list", errors.Unavailable("apiserver down"), times=1000)
    sync = PodSync(agent, await created(agent, "p1"))
    await sync.sync_pod()
    rec = sync.records["c"]
    message = "services have not yet been read at least once, cannot construct envvars"
    assert rec.cid is None and (rec.waiting_reason, rec.waiting_message) == ("CreateContainerConfigError", message)
    assert ("Failed", f"Error: {message}") in agent.recorder.seen
    pending = agent.service_env.env()                        # past the bound: None at once, no waiting
    with pytest.raises(StopIteration) as answered:
        pending.send(None)
    assert answered.value.value is None
    agent.client.clear_failures()                               # the informer's retry lists it
    await asyncio.wait_for(agent.service_env.informer.wait_synced(), 30)
    await sync.sync_pod()
    assert agent.runtime.env[rec.cid]["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    agent.service_env.close()


async def test_a_worker_without_an_agent_watches_for_itself_and_stops_with_the_pod(tmp_path):
    agent = node(tmp_path)                                      # no service_env: PodVolumes' own
    agent.client.seed(kubernetes_service())
    sync = PodSync(agent, await created(agent))
    await sync.sync_pod()
    assert sync.records["c"].cid and service_requests(agent.client) == ["list"]
    sync.volumes.close(sync.pod_dir)
    await watch_stopped()


async def test_the_agent_watches_the_service_from_start_to_stop(tmp_path):
    client = FakeClient()
    client.seed(kubernetes_service())
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24")
    async with running(agent):
        await until(agent.ready.is_set)
        for name in ("a", "b", "c"):
            await client.create(pod(name))
        await until(lambda: all(w.records["c"].cid for w in agent.workers.values())
                    and len(agent.workers) == 3)
        assert service_requests(client) == ["list"]
        assert [t for t in asyncio.all_tasks() if t.get_name() == WATCH_TASK]
    await watch_stopped()



async def test_the_agent_stops_its_pods_config_watches_when_it_stops(tmp_path):
    """A pod's ConfigMap watch ends with the agent (hollow agents and tests restart agents in
    one process); the pod's files stay for the next agent."""
    client = FakeClient()
    client.seed(kubernetes_service())
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "cfg", "default"
    cm.data["k"] = "v"
    client.seed(cm)
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24")
    p = pod("a")
    p.spec.containers[0].env.add(name="K").value_from.config_map_key_ref.name = "cfg"
    p.spec.containers[0].env[0].value_from.config_map_key_ref.key = "k"
    async with running(agent):
        await until(agent.ready.is_set)
        await client.create(p)
        await until(lambda: len(agent.workers) == 1 and agent.workers[next(iter(agent.workers))].records["c"].cid)
        assert len(agent.config_watch) == 1
        assert [t for t in asyncio.all_tasks() if t.get_name() == "watch-ConfigMap-default/cfg"]
    assert len(agent.config_watch) == 0
    for _ in range(50):
        if not [t for t in asyncio.all_tasks() if t.get_name() == "watch-ConfigMap-default/cfg" and not t.done()]:
            break
        await asyncio.sleep(0.01)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "watch-ConfigMap-default/cfg" and not t.done()]


def service(name, namespace, ip, *ports):
    svc = kinds.new("Service")
    svc.metadata.name, svc.metadata.namespace = name, namespace
    svc.spec.cluster_ip = ip
    for port_name, port, proto in ports:
        svc.spec.ports.add(name=port_name, port=port, protocol=proto)
    return svc


async def env_of(agent, name, namespace="team", **spec) -> dict[str, str]:
    from machinery import codec
    p = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                         "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox:1.36"}], **spec}})
    sync = PodSync(agent, await agent.client.create(p))
    await sync.sync_pod()
    assert sync.records["c"].cid, sync.records["c"].waiting_message
    return agent.runtime.env[sync.records["c"].cid]


async def test_service_links_are_the_namespaces_services_with_a_cluster_ip_as_the_kubelet_injects_them(tmp_path):
    agent = agent_with_watch(tmp_path)
    agent.client.seed(kubernetes_service(), service("redis-primary", "team", "10.96.0.20", ("", 6379, "TCP")),
                      service("db", "team", "10.96.0.21", ("pg", 5432, "TCP"), ("dns", 53, "UDP")),
                      service("headless", "team", "None", ("web", 80, "TCP")),
                      service("elsewhere", "other", "10.96.0.30", ("", 80, "TCP")))
    env = await env_of(agent, "p1")
    assert {k: v for k, v in env.items() if k.startswith("REDIS_PRIMARY_")} == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.96.0.20", "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_PORT": "tcp://10.96.0.20:6379", "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.96.0.20:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp", "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.96.0.20"}
    assert env["DB_SERVICE_PORT_PG"] == "5432" and env["DB_PORT_53_UDP"] == "udp://10.96.0.21:53"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"           # the master Service, from `default`
    assert not [k for k in env if k.startswith(("HEADLESS_", "ELSEWHERE_"))]   # headless; other namespace

    off = await env_of(agent, "p2", enableServiceLinks=False)        # only the master Service's
    assert {k.split("_")[0] for k in off if k.endswith(("_HOST", "_PORT"))} == {"KUBERNETES"}

    await agent.client.create(service("late", "team", "10.96.0.40", ("", 8080, "TCP")))
    await until(lambda: agent.service_env.informer.get("team", "late") is not None)
    assert (await env_of(agent, "p3"))["LATE_SERVICE_HOST"] == "10.96.0.40"   # the pods started afterwards
    assert "LATE_SERVICE_HOST" not in env
    assert [v for v in service_requests(agent.client) if v in ("get", "list")] == ["list"]
    agent.service_env.close()


async def test_the_proxy_and_the_env_share_one_service_watch(tmp_path):
    client = FakeClient()
    client.seed(kubernetes_service(), service("db", "default", "10.96.0.21", ("", 5432, "TCP")))
    agent = build_agent(client, node_name="n1", node_ip="192.0.2.10", root_dir=str(tmp_path), runtime="fake",
                        pod_cidr="10.9.0.0/24", proxy="iptables")
    async with running(agent):
        await until(agent.ready.is_set)
        await until(lambda: agent.proxier is not None and agent.proxier.applied_payload is not None)
        assert "10.96.0.21" in agent.proxier.applied_payload
        assert agent.proxier._informers[0] is agent.service_env.informer
        assert service_requests(client) == ["list"]
    await watch_stopped()
