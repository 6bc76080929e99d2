"""EndpointSlices against a real etcd + apiserver: the EndpointSlice controller (in process) keeps a
Service's slices as Kubernetes' does — max per slice, conditions of terminating pods, placeholder,
deletion with the Service — the apiserver validates slices with Kubernetes' messages, and `kctl get
endpointslices` prints kubectl's columns."""
from __future__ import annotations

import asyncio

import pytest

from controllers.endpointslice import EndpointSliceController
from machinery import codec, errors
from machinery.informer import SharedInformerFactory
from tests.integration.kctl_helpers import kctl
from tests.integration.test_controllers_sim import until


def service(name="web"):
    return codec.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                            "spec": {"selector": {"app": name},
                                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})


def pod(i, app="web"):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": f"{app}-{i}", "namespace": "default", "labels": {"app": app}},
                            "spec": {"hostname": f"h{i}", "subdomain": app, "containers": [{
                                "name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}})


async def make_ready(client, p, ip):
    p = await client.get("Pod", p.metadata.name, "default")
    p.spec.node_name = "n1"
    await client.bind("default", p.metadata.name, "n1")
    p = await client.get("Pod", p.metadata.name, "default")
    p.status.phase, p.status.pod_ip = "Running", ip
    p.status.conditions.add(type="Ready", status="True")
    await client.update_status(p)


async def slices(client, name="web"):
    items, _ = await client.list("EndpointSlice", "default", label_selector=f"kubernetes.io/service-name={name}")
    return items


@pytest.fixture
async def controller(client):
    factory = SharedInformerFactory(client)
    ctrl = EndpointSliceController(client, factory, max_endpoints_per_slice=2)
    tasks = [asyncio.create_task(factory.run()), asyncio.create_task(ctrl.run())]
    yield ctrl
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_controller_keeps_slices_of_a_service(client, controller, apiserver):
    await client.create(service())
    await until(lambda: slices(client), "a placeholder slice")
    [placeholder] = await slices(client)
    assert not placeholder.ports and not placeholder.endpoints and placeholder.address_type == "IPv4"
    for i in range(5):
        await make_ready(client, await client.create(pod(i)), f"10.244.0.{i + 10}")

    async def five_ready():
        got = await slices(client)
        return len(got) == 3 and sum(e.conditions.ready for es in got for e in es.endpoints) == 5
    await until(five_ready, "5 ready endpoints in 3 slices")
    got = await slices(client)
    assert sorted(len(es.endpoints) for es in got) == [1, 2, 2]
    assert all(es.metadata.name.startswith("web-") and es.metadata.owner_references[0].kind == "Service"
               and es.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
               for es in got)
    e = next(e for es in got for e in es.endpoints if e.addresses[0] == "10.244.0.10")
    assert (e.hostname, e.node_name, e.target_ref.name) == ("h0", "n1", "web-0")
    # a pod being deleted (graceful): not ready, still serving, terminating
    await client.delete("Pod", "web-0", "default", grace_period=30)

    async def terminating():
        for es in await slices(client):
            for e in es.endpoints:
                if e.addresses[0] == "10.244.0.10":
                    return (e.conditions.ready, e.conditions.serving, e.conditions.terminating) == (False, True, True)
    await until(terminating, "web-0 terminating in its slice")
    out = await asyncio.to_thread(kctl, apiserver.target, "get", "endpointslices")
    assert out.code == 0 and out.out.splitlines()[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert sum(" IPv4 " in ln and " 8080 " in ln for ln in out.out.splitlines()) == 3
    await client.delete("Service", "web", "default")
    await until(lambda: _none(client), "slices gone with the service")


async def _none(client):
    return not await slices(client)


async def test_apiserver_validates_slices_with_kubernetes_messages(client):
    bad = codec.from_dict({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "bad", "namespace": "default"}, "addressType": "IPv4",
                           "endpoints": [{"addresses": ["not-an-ip"]}], "ports": [{"name": "x", "port": 0}]})
    with pytest.raises(errors.Invalid) as exc:
        await client.create(bad)
    msg = str(exc.value)
    assert 'endpoints[0].addresses[0]: Invalid value: "not-an-ip": must be a valid IPv4 address' in msg
    assert "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in msg
    ok = codec.from_dict({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                          "metadata": {"name": "ok", "namespace": "default"}, "addressType": "IPv4",
                          "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]})
    created = await client.create(ok)
    assert created.ports[0].protocol == "TCP" and created.ports[0].name == ""      # defaulted
    created.address_type = "IPv6"
    del created.endpoints[:]
    with pytest.raises(errors.Invalid, match="addressType: Invalid value: \"IPv6\": field is immutable"):
        await client.update(created)
