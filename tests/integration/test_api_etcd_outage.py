"""etcd stopped and restarted under a running apiserver; /metrics."""
from __future__ import annotations

import asyncio

import pytest

from machinery import errors
from tests.cluster import new_object

HANG_GUARD = 120


async def _until_ok(fn):
    """Retry while the apiserver reports etcd unavailable (it reconnects by itself)."""
    for _ in range(600):
        try:
            return await fn()
        except errors.Unavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("the apiserver never recovered")


@pytest.mark.apiserver_args("--etcd-timeout", "1")
async def test_etcd_down_then_back(apiserver, etcd, client):
    p = await client.create(new_object("Pod", "before"))
    watch = client.watch("Pod", resource_version=p.metadata.resource_version)
    pending = asyncio.ensure_future(anext(watch))
    etcd.stop()
    for call in (lambda: client.get("Pod", "before"),
                 lambda: client.list("Pod"),
                 lambda: client.create(new_object("Pod", "during")),
                 lambda: client.bind("default", "before", "node-1")):
        with pytest.raises(errors.Unavailable) as exc:
            await call()
        assert exc.value.message.startswith("etcd unavailable: ")
    assert apiserver.running
    etcd.start()
    await _until_ok(lambda: client.get("Pod", "before"))
    after = await _until_ok(lambda: client.create(new_object("Pod", "after")))
    # The open watch (its stream never broke) delivers the write made after the outage.
    ev = await asyncio.wait_for(pending, HANG_GUARD)
    assert (ev.type, ev.object.metadata.name, ev.resource_version) == (
        "ADDED", "after", after.metadata.resource_version)
    await watch.aclose()
    # New watches work too, from before the outage.
    events = []
    async for ev in client.watch("Pod", resource_version=p.metadata.resource_version):
        events.append(ev.object.metadata.name)
        break
    assert events == ["after"]
    log = apiserver.log_path.read_text()
    assert "Traceback" not in log
    assert "etcd unavailable" in log


async def test_metrics_endpoint(apiserver, client):
    await client.create(new_object("Pod", "m"))
    await client.get("Pod", "m")
    with pytest.raises(errors.NotFound):
        await client.get("Pod", "missing")
    watch = client.watch("Pod")
    await anext(watch)
    text = apiserver.metrics_text()
    await watch.aclose()
    assert 'kctl_apiserver_requests_total{code="OK",kind="Pod",verb="create"} 1.0' in text
    assert 'kctl_apiserver_requests_total{code="NOT_FOUND",kind="Pod",verb="get"} 1.0' in text
    assert 'kctl_apiserver_request_duration_seconds_bucket{kind="Pod",le="0.005",verb="get"}' in text
    assert 'kctl_apiserver_watches{kind="Pod"} 1.0' in text
    assert 'kctl_apiserver_etcd_request_duration_seconds_count{operation="create"}' in text
