"""Helpers for the controller integration tests (no tests here).

`SimNodes` stands in for hollow node agents until `kctl-nodeagent
--runtime=fake` can be started from tests: per node a Node object and a Lease
in kube-node-lease renewed every 0.5 s, and one pod watch that, for pods
bound to a live node, posts Running + Ready=True (not Ready for images with
"never-ready" in their name) with an IP, and completes graceful deletions
(delete with grace 0). `silence(name)` stops a node's heartbeats and its pod
handling, as a dead machine would; `revive(name)` brings it back, and it then
re-posts Ready for its pods (as a kubelet's status manager does).
`hold_ready.add(image)` keeps new pods of an image not ready until
`release(image)`, to stop a rollout at a known point.

`ControlPlane` runs the real scheduler and the controller manager in-process
(each a task; `restart_controllers()` cancels and rebuilds the manager,
which starts from a fresh list, like a restarted process).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from machinery import codec, errors, kinds
from machinery.informer import Informer

from controllers import main as cm
from scheduler import hollow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def until(pred, what, timeout=60.0, delay=0.05):
    """Poll (a liveness guard with a generous limit, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        if loop.time() > deadline:
            raise AssertionError(f"never reached: {what}")
        await asyncio.sleep(delay)


class SimNodes:
    def __init__(self, client):
        self.client = client
        self.live: set[str] = set()
        self.names: list[str] = []
        self.tasks: list[asyncio.Task] = []
        self.pods = Informer(client, "Pod")
        self._ip = 0
        self.hold_ready: set[str] = set()     # images whose new pods stay not ready until released

    async def add(self, *names, cpu="32", pods="110"):
        for name in names:
            await self.client.create(hollow.node(name, cpu=cpu, memory="64Gi", pods=pods))
            lease = kinds.new("Lease")
            lease.metadata.name, lease.metadata.namespace = name, "kube-node-lease"
            lease.spec.holder_identity = name
            lease.spec.lease_duration_seconds = 40
            await self.client.create(lease)
            self.names.append(name)
            self.live.add(name)
            self.tasks.append(asyncio.create_task(self._heartbeat(name)))

    async def start(self):
        self.pods.add_handler(self._on_pod, lambda old, new: self._on_pod(new), None)
        self.tasks.append(asyncio.create_task(self.pods.run()))
        self.tasks.append(asyncio.create_task(self._resync()))
        await self.pods.wait_synced()

    async def stop(self):
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def silence(self, name):
        self.live.discard(name)

    def release(self, image):
        self.hold_ready.discard(image)
        for p in self.pods.list():
            self._on_pod(p)

    def revive(self, name):
        self.live.add(name)
        for p in self.pods.list():
            if p.spec.node_name == name:
                self._on_pod(p)

    async def _heartbeat(self, name):
        while True:
            if name in self.live:
                try:
                    lease = await self.client.get("Lease", name, "kube-node-lease")
                    lease.spec.renew_time.GetCurrentTime()
                    await self.client.update(lease)
                except errors.ApiError:
                    pass
            await asyncio.sleep(0.5)

    async def _resync(self):
        while True:
            await asyncio.sleep(1.0)
            for p in self.pods.list():
                self._on_pod(p)

    def _on_pod(self, pod):
        if pod.spec.node_name in self.live:
            asyncio.get_running_loop().create_task(self._handle(pod))

    async def _handle(self, pod):
        md = pod.metadata
        try:
            if md.HasField("deletion_timestamp"):
                await self.client.delete("Pod", md.name, md.namespace, grace_period=0, uid=md.uid)
                return
            ready_cond = next((c for c in pod.status.conditions if c.type == "Ready"), None)
            want_ready = not any("never-ready" in c.image or c.image in self.hold_ready
                                 for c in pod.spec.containers)
            if pod.status.phase == "Running" and ready_cond is not None and \
                    (ready_cond.status == "True") == want_ready:
                return
            new = codec.copy(pod)
            new.status.phase = "Running"
            if not new.status.pod_ip:
                self._ip += 1
                new.status.pod_ip = f"10.250.{self._ip // 250}.{self._ip % 250 + 1}"
                new.status.pod_ips.add(ip=new.status.pod_ip)
                new.status.start_time.GetCurrentTime()
            c = next((c for c in new.status.conditions if c.type == "Ready"), None)
            if c is None:
                c = new.status.conditions.add(type="Ready")
            c.status = "True" if want_ready else "False"
            c.reason = "" if want_ready else "ContainersNotReady"
            c.last_transition_time.GetCurrentTime()
            del new.status.container_statuses[:]
            for ctr in new.spec.containers:
                cs = new.status.container_statuses.add(name=ctr.name, image=ctr.image, ready=want_ready)
                cs.state.running.started_at.GetCurrentTime()
            await self.client.update_status(new)
        except errors.ApiError:
            pass                         # moved on meanwhile; the next event or resync retries


def manager_args(*extra):
    return cm.parse_args(["--node-monitor-grace-period", "4s", "--pod-eviction-timeout", "2s", *extra])


class ControlPlane:
    def __init__(self, client, *args):
        self.client = client
        self.args = manager_args(*args)
        self._cm: asyncio.Task | None = None
        self._sched: asyncio.Task | None = None
        self.controllers = {}

    async def start(self, scheduler=True):
        if scheduler:
            from scheduler.scheduler import Scheduler
            self._sched = asyncio.create_task(Scheduler(self.client).run())
        self.start_controllers()

    def start_controllers(self):
        tasks, self.controllers = cm.build(self.client, self.args)

        async def run():
            async with asyncio.TaskGroup() as tg:
                for name, coro in tasks.items():
                    tg.create_task(coro, name=name)
        self._cm = asyncio.create_task(run())

    async def stop_controllers(self):
        if self._cm is not None:
            self._cm.cancel()
            await asyncio.gather(self._cm, return_exceptions=True)
            self._cm = None

    async def restart_controllers(self):
        await self.stop_controllers()
        self.start_controllers()

    async def stop(self):
        await self.stop_controllers()
        if self._sched is not None:
            self._sched.cancel()
            await asyncio.gather(self._sched, return_exceptions=True)


@contextlib.asynccontextmanager
async def cluster(client, nodes=("n1", "n2", "n3"), scheduler=True):
    sim = SimNodes(client)
    await sim.add(*nodes)
    await sim.start()
    cp = ControlPlane(client)
    await cp.start(scheduler=scheduler)
    try:
        yield sim, cp
    finally:
        await cp.stop()
        await sim.stop()


async def kctl(server, *args):
    """Run the kctl CLI as a subprocess; (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubectlish.main", "--server", server, *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


def deployment(name="web", replicas=10, image="app:v1", surge=3, unavailable=2, deadline=600, strategy=None):
    d = kinds.new("Deployment")
    d.metadata.name, d.metadata.namespace = name, "default"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    c = d.spec.template.spec.containers.add(name="main", image=image)
    c.ports.add(name="http", container_port=8080, protocol="TCP")
    if strategy:
        d.spec.strategy.type = strategy
    else:
        d.spec.strategy.type = "RollingUpdate"
        d.spec.strategy.rolling_update.max_surge.int_val = surge
        d.spec.strategy.rolling_update.max_unavailable.int_val = unavailable
    d.spec.progress_deadline_seconds = deadline
    return d
