"""Client failover across real apiservers (machinery/endpoints.py): three
apiservers on one etcd, each on its own loopback address (127.0.0.1-3) with
a serving certificate of the harness CA for that address, and a Client
given all three. SIGKILL the apiserver the client is using: gets, lists
and creates go on through another; a watch (and an informer) resumes on
another with every event exactly once; a leader keeps its lease, also
when its apiserver falls silent (SIGSTOP: the connection stays up, nothing
answers, as behind a partition)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import grpc
import pytest

from harness.control_plane import ApiServer, Etcd
from machinery import errors, kinds
from machinery.client import Client
from machinery.informer import Informer
from machinery.leaderelection import LeaderElector

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture
def apiservers(tmp_path):
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(Etcd(tmp_path / "etcd"))
        yield [stack.enter_context(ApiServer(etcd, tmp_path / f"api{i}", host=h)) for i, h in enumerate(HOSTS)]


def configmap(name: str, **data):
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = name, "default"
    cm.data.update(data)
    return cm


def kill_used(client: Client, apiservers: list[ApiServer]) -> ApiServer:
    """SIGKILL the apiserver the client talks to now (by its PID)."""
    (used,) = [a for a in apiservers if a.target == client.endpoint]
    used.kill()
    return used


async def noticed(client: Client) -> None:
    """Until the client's connection to its (killed) apiserver is seen closed:
    a write sent before that may have been sent, and is not retried."""
    async with asyncio.timeout(30):
        while client.channel.get_state() == grpc.ChannelConnectivity.READY:
            await client.channel.wait_for_state_change(grpc.ChannelConnectivity.READY)


async def test_every_endpoint_passes_the_tls_name_check(apiservers):
    for api in apiservers:
        async with Client(api.target, timeout=10) as c:
            assert (await c.version()).git_version


async def test_reads_and_writes_go_on_when_the_used_apiserver_dies(apiservers):
    async with Client(",".join(a.target for a in apiservers), timeout=15) as client:
        assert client.targets == [a.target for a in apiservers]
        await client.create(configmap("before"))
        dead = kill_used(client, apiservers)
        await noticed(client)
        # the connection is refused: the create surely was not sent, so it goes to the next apiserver
        await client.create(configmap("after"))
        assert client.endpoint != dead.target
        assert (await client.get("ConfigMap", "before", "default")).metadata.name == "before"
        items, _ = await client.list("ConfigMap", "default")
        assert {"before", "after"} <= {o.metadata.name for o in items}
        second = kill_used(client, apiservers)
        assert second is not dead
        assert (await client.get("ConfigMap", "after", "default")).metadata.name == "after"   # a read: at once
        await client.update(configmap("after", k="v"))
        assert client.endpoint not in (dead.target, second.target)


async def test_all_apiservers_down_fails_fast_as_unavailable(apiservers):
    async with Client([a.target for a in apiservers], timeout=15) as client:
        await client.version()
        for api in apiservers:
            api.kill()
        with pytest.raises(errors.Unavailable):
            await client.get("ConfigMap", "x", "default")
        with pytest.raises(errors.Unavailable):
            await client.create(configmap("x"))
        with pytest.raises(errors.Unavailable):
            async for _ in client.watch("ConfigMap", "default", resource_version="1"):
                pass


async def _write(n: int, writer: Client, halfway: asyncio.Event) -> list[str]:
    """Create cm-0..cm-(n-1) one after the other; set `halfway` in the middle."""
    rvs = []
    for i in range(n):
        rvs.append((await writer.create(configmap(f"cm-{i}"))).metadata.resource_version)
        if i == n // 2:
            halfway.set()
            await asyncio.sleep(0.5)           # the kill happens here, writes go on after it
    return rvs


async def test_a_watch_resumes_on_another_apiserver_with_every_event_once(apiservers):
    n = 30
    async with Client([a.target for a in apiservers], timeout=15) as client, \
            Client(apiservers[2].target, timeout=15) as writer:
        _, rv = await client.list("ConfigMap", "default")
        assert client.endpoint == apiservers[0].target
        seen: list[tuple[str, str, str]] = []
        done = asyncio.Event()

        async def watch():
            async for ev in client.watch("ConfigMap", "default", resource_version=rv):
                seen.append((ev.type, ev.object.metadata.name, ev.resource_version))
                if len(seen) == n:
                    done.set()

        halfway = asyncio.Event()
        watcher = asyncio.create_task(watch())
        writing = asyncio.create_task(_write(n, writer, halfway))
        try:
            async with asyncio.timeout(60):
                await halfway.wait()
                kill_used(client, apiservers)
                rvs = await writing
                await done.wait()
                await asyncio.sleep(0.5)        # an extra (duplicate) event would arrive now
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, writing, return_exceptions=True)
        assert seen == [("ADDED", f"cm-{i}", rvs[i]) for i in range(n)]
        assert client.endpoint != apiservers[0].target


async def test_an_informer_resumes_without_relisting(apiservers):
    n = 20
    async with Client([a.target for a in apiservers], timeout=15) as client, \
            Client(apiservers[2].target, timeout=15) as writer:
        inf = Informer(client, "ConfigMap", "default")
        added: list[str] = []
        inf.add_handler(on_add=lambda o: added.append(o.metadata.name))
        task = asyncio.create_task(inf.run())
        halfway = asyncio.Event()
        try:
            async with asyncio.timeout(60):
                await inf.wait_synced()
                writing = asyncio.create_task(_write(n, writer, halfway))
                await halfway.wait()
                kill_used(client, apiservers)
                await writing
                while len(added) < n or inf.notifications_pending():
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert added == [f"cm-{i}" for i in range(n)]
        assert inf.relists == 0
        assert sorted(inf.keys()) == sorted(f"default/cm-{i}" for i in range(n))


async def _keeps_lease(apiservers, fault, timing) -> None:
    """A leader (client of all apiservers) and a rival; `fault(client)` hits the
    apiserver the leader uses; five renewals later the leader still holds the lease."""
    async with Client([a.target for a in apiservers], timeout=15) as client, \
            Client([a.target for a in reversed(apiservers)], timeout=15) as other, \
            Client(apiservers[2].target, timeout=15) as observer:
        leader = LeaderElector(client, "failover", "first", **timing)
        rival = LeaderElector(other, "failover", "second", **timing)
        lead = asyncio.create_task(leader.run(asyncio.Event().wait))
        rival_task = asyncio.create_task(asyncio.sleep(0))
        try:
            async with asyncio.timeout(60):
                while not leader.is_leader:
                    await asyncio.sleep(0.05)
                rival_task = asyncio.create_task(rival.run(asyncio.Event().wait))
                hit = client.endpoint
                fault(client)
                lease = await observer.get("Lease", "failover", "kube-system")
                renewals = 0
                while renewals < 5:             # five renewals written through the other apiservers
                    await asyncio.sleep(0.2)
                    now = await observer.get("Lease", "failover", "kube-system")
                    if now.spec.renew_time != lease.spec.renew_time:
                        renewals, lease = renewals + 1, now
                    assert now.spec.holder_identity == "first"
                    assert leader.is_leader and not rival.is_leader and not lead.done()
            assert lease.spec.lease_transitions == 0
            assert client.endpoint != hit
        finally:
            for t in (lead, rival_task):
                t.cancel()
            await asyncio.gather(lead, rival_task, return_exceptions=True)


async def test_a_leader_keeps_its_lease_through_another_apiserver(apiservers):
    await _keeps_lease(apiservers, lambda client: kill_used(client, apiservers),
                       dict(lease_duration=6, renew_deadline=4, retry_period=0.5))


async def test_a_leader_keeps_its_lease_when_its_apiserver_falls_silent(apiservers):
    """SIGSTOP: the connection stays up and nothing answers, as behind a partition."""
    stopped = apiservers[0]                    # the leader's client uses the first
    try:
        await _keeps_lease(apiservers, lambda client: os.kill(stopped.pid, signal.SIGSTOP),
                           dict(lease_duration=9, renew_deadline=6, retry_period=0.5))
    finally:
        os.kill(stopped.pid, signal.SIGCONT)


async def test_a_watch_goes_on_after_rotate_closes_its_channel(apiserver):
    """Client.rotate (a renewed certificate) closes the old channels after its
    grace; grpc.aio then cancels the watches still open on them. The watch
    resumes on the new channel from its last resourceVersion, every event
    once (it used to end the watching informer with CancelledError)."""
    async with Client(apiserver.target, credentials=apiserver.credentials, timeout=15) as client:
        _, rv = await client.list("ConfigMap", "default")
        seen: list[str] = []
        got = asyncio.Event()

        async def watch():
            async for ev in client.watch("ConfigMap", "default", resource_version=rv):
                seen.append(ev.object.metadata.name)
                got.set()

        watcher = asyncio.create_task(watch())
        try:
            async with asyncio.timeout(30):
                await client.create(configmap("before"))
                await got.wait()
                old = list(client._endpoints.channels)
                await client.rotate(apiserver.credentials, grace=0)
                while old[0].get_state() != grpc.ChannelConnectivity.SHUTDOWN:
                    await asyncio.sleep(0.05)
                got.clear()
                await client.create(configmap("after"))
                await got.wait()
                await asyncio.sleep(0.5)        # an extra (duplicate) event would arrive now
            assert not watcher.done()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        assert seen == ["before", "after"]
