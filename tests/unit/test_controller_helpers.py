"""Shared helpers for the controller unit tests (FakeClient + real informers).

`Harness` runs a SharedInformerFactory over a FakeClient; tests call a
controller's `sync(key)` directly (deterministic) or start its workers, and
`settle()` waits until every informer has seen the fake's latest revision.
`Kubelet` plays node agents: it binds and readies pods and finishes graceful
deletions, so Deployment rollouts can run end to end on the fake.
"""
from __future__ import annotations

import asyncio
import contextlib

from machinery import codec, kinds
from machinery.fakeclient import FakeClient
from machinery.informer import SharedInformerFactory


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class Harness:
    def __init__(self, clock=None):
        self.clock = clock
        self.client = FakeClient(clock=clock) if clock else FakeClient()
        self.factory = SharedInformerFactory(self.client)
        self.tasks: list[asyncio.Task] = []

    async def start(self, *controllers, workers: bool = False):
        self.tasks.append(asyncio.create_task(self.factory.run()))
        await asyncio.wait_for(self.factory.wait_synced(), 5)
        if workers:
            for c in controllers:
                self.tasks.append(asyncio.create_task(c.run()))

    def spawn(self, coro):
        self.tasks.append(asyncio.create_task(coro))

    def _caught_up(self) -> bool:
        for inf in self.factory.informers:
            want = {(o.metadata.namespace, o.metadata.name, o.metadata.resource_version)
                    for o in self.client.objects(inf.kind)
                    if not inf.namespace or o.metadata.namespace == inf.namespace}
            have = {(o.metadata.namespace, o.metadata.name, o.metadata.resource_version) for o in inf.list()}
            if want != have or inf.notifications_pending():
                return False
        return True

    async def settle(self):
        """Until every informer has applied the fake's latest writes (and handlers ran)."""
        for _ in range(1000):
            await asyncio.sleep(0.001)
            if self._caught_up():
                await asyncio.sleep(0.002)
                if self._caught_up():
                    return
        raise AssertionError("informers never caught up")

    async def stop(self):
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def objs(self, kind, ns="default"):
        return [o for o in self.client.objects(kind) if o.metadata.namespace == ns or not ns]


async def eventually(pred, timeout=10.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never reached: {what}")
        await asyncio.sleep(0.01)


def set_ready(pod, ready: bool, since: float, ip: str = "10.244.0.9", node: str = "n1"):
    p = codec.copy(pod)
    p.spec.node_name = p.spec.node_name or node
    p.status.phase = "Running"
    p.status.pod_ip = ip
    c = next((c for c in p.status.conditions if c.type == "Ready"), None)
    if c is None:
        c = p.status.conditions.add(type="Ready")
    want = "True" if ready else "False"
    if c.status != want:
        c.last_transition_time.FromSeconds(int(since))
    c.status = want
    return p


class Kubelet:
    """Binds new pods to `node`, makes them Running (+Ready unless their image
    contains 'never-ready'), and completes graceful deletions at once."""

    def __init__(self, client, node="n1", clock=None):
        self.client, self.node, self.clock = client, node, clock
        self.n = 0

    async def run(self):
        import time
        async for ev in self.client.watch("Pod"):
            pod = ev.object
            if ev.type == "DELETED":
                continue
            try:
                if pod.metadata.HasField("deletion_timestamp"):
                    await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period=0)
                elif not pod.spec.node_name:
                    await self.client.bind(pod.metadata.namespace, pod.metadata.name, self.node)
                elif pod.status.phase != "Running":
                    self.n += 1
                    ready = not any("never-ready" in c.image for c in pod.spec.containers)
                    now = self.clock() if self.clock else time.time()
                    await self.client.update_status(set_ready(pod, ready, now, ip=f"10.244.0.{self.n % 250 + 2}",
                                                              node=self.node))
            except Exception:  # noqa: BLE001 - the object moved on; the next event brings it back
                pass


def rs_obj(name="web", replicas=3, labels=None, min_ready=0):
    rs = kinds.new("ReplicaSet")
    rs.metadata.name, rs.metadata.namespace = name, "default"
    labels = labels or {"app": name}
    rs.spec.replicas = replicas
    rs.spec.min_ready_seconds = min_ready
    rs.spec.selector.match_labels.update(labels)
    rs.spec.template.metadata.labels.update(labels)
    rs.spec.template.spec.containers.add(name="main", image="busybox:1.36")
    return rs


def deployment_obj(name="web", replicas=10, surge=3, unavailable=2, image="app:v1", strategy="RollingUpdate",
                   deadline=600, history=10, min_ready=0):
    d = kinds.new("Deployment")
    d.metadata.name, d.metadata.namespace = name, "default"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image=image)
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        for field, v in (("max_surge", surge), ("max_unavailable", unavailable)):
            if isinstance(v, str):
                getattr(d.spec.strategy.rolling_update, field).str_val = v
            else:
                getattr(d.spec.strategy.rolling_update, field).int_val = v
    d.spec.progress_deadline_seconds = deadline
    d.spec.revision_history_limit = history
    d.spec.min_ready_seconds = min_ready
    return d


@contextlib.asynccontextmanager
async def harness(*make, clock=None, workers=False, kubelet=False):
    h = Harness(clock)
    ctrls = [m(h) for m in make]
    await h.start(*ctrls, workers=workers)
    if kubelet:
        h.spawn(Kubelet(h.client, clock=clock).run())
    try:
        yield (h, *ctrls)
    finally:
        await h.stop()
