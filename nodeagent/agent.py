"""The node agent: registration, Lease heartbeats, node status, pod workers, routes.

``Agent.run()`` is the one readable entry point (design §6.1):

1. register (or re-adopt) our ``Node``: labels, taints, capacity/allocatable,
   addresses, nodeInfo, and the annotations ``kctl.io/agent-endpoint`` (our
   logs/exec service) and ``storage.kctl.io/local-path-dir`` (localpath.py);
2. wait for ``spec.podCIDR`` (set by the controller manager's node IPAM, or by
   us from ``--pod-cidr`` for tests), then set up the pod network;
3. list the runtime's containers once (labels carry pod uid, container name,
   restart count) so pod workers re-adopt them;
4. run, as named tasks in one TaskGroup (any failure ends the agent): the
   Lease heartbeat (nodeagent/lease.py), the node status loop, the event recorder, the node
   informer (routes to other nodes' pod CIDRs), the pod informer (field
   selector ``spec.nodeName=<me>``) and the orphan sweep once it has synced
   (a deleted local-path volume's data is removed by the binder's helper pod,
   localpath.py); objects pods use: configwatch.py;
5. with a service proxy (``make_proxier``, nodeagent/proxy.py): once the pod
   CIDR is known, a ``Proxier`` fed by a Service and an EndpointSlice informer
   (all namespaces); both informers and ``proxier.run()`` are named tasks of
   the same group.  The Lease heartbeat carries the slices' resourceVersion
   the proxy applied (written at once when it advances), and pod termination
   waits for every node's proxy to drop the pod before SIGTERM
   (``DrainBarrier``, nodeagent/drain.py).  Stopping the agent leaves the
   KCTL-* rules in place (pods keep serving, the next agent takes them
   over); only the explicit
   ``kctl-nodeagent --cleanup-iptables`` removes them.  Hollow agents get no
   proxy, or one on ``FakeIptables`` — never the host's tables.

Pod informer handlers only hand the newest object to the pod's worker
(``PodWorker.update``, nodeagent/podworker.py; what a worker does for its
pod is in nodeagent/syncpod.py), creating the worker on first sight; each
worker is its own task.  Workers finished with a pod (deleted from the API) are
forgotten, and their UIDs remembered for a while so that a late watch event
cannot resurrect them.  Cancelling ``run()`` stops everything in this process
but leaves containers and sandboxes alone: a new agent re-adopts them.

No module-level mutable state: many agents (hollow mode) share one process.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import platform
import shutil

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import errors
from machinery.events import EventRecorder
from machinery.informer import Informer
from machinery.pb import core_pb2, discovery_pb2
from machinery.runner import run_tasks
from nodeagent import localpath, metrics, podspec, volumes
from nodeagent.configwatch import ConfigWatch
from nodeagent.drain import DrainBarrier
from nodeagent.lease import NodeLease
from nodeagent.podfiles import DnsConfigurer
from nodeagent.podworker import PodWorker

log = logging.getLogger("kctl.nodeagent")

AGENT_ENDPOINT_ANNOTATION = "kctl.io/agent-endpoint"
AGENT_PORT = 10250
VERSION = "kctl-nodeagent/v0.1.0"


def _now() -> Timestamp:
    t = Timestamp()
    t.GetCurrentTime()
    return t


def machine_capacity() -> dict[str, str]:
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_kib}Ki", "pods": "110"}


def subtract(capacity: dict[str, str], reserved: dict[str, str]) -> dict[str, str]:
    from machinery import quantity
    out = dict(capacity)
    for k, v in reserved.items():
        if k in out:
            if k == "cpu":
                m = max(0, quantity.milli_value(out[k]) - quantity.milli_value(v))
                out[k] = f"{m}m" if m % 1000 else str(m // 1000)
            else:
                out[k] = str(max(0, quantity.value(out[k]) - quantity.value(v)))
    return out


class Agent:
    def __init__(self, client, *, node_name: str, node_ip: str, root_dir: str, runtime, images,
                 make_network, pod_cidr: str = "", heartbeat_interval: float = 1.0,
                 status_interval: float = 10.0, labels: dict[str, str] | None = None,
                 taints: list[core_pb2.Taint] | None = None, system_reserved: dict[str, str] | None = None,
                 capacity: dict[str, str] | None = None, crashloop_base: float = 10.0,
                 agent_port: int = AGENT_PORT, fake: bool = False, runtime_version: str = "runc",
                 make_proxier=None, dns=None, drain_timeout: float = 10.0):
        self.client = client
        self.dns = dns or DnsConfigurer()     # resolv.conf/hosts of pods (nodeagent/podfiles.py)
        self.node_name, self.node_ip = node_name, node_ip
        self.root_dir = root_dir
        self.runtime, self.images = runtime, images
        self.make_network = make_network
        self.network = None
        self.pod_cidr_override = pod_cidr
        self.pod_cidr = ""
        self.heartbeat_interval, self.status_interval = heartbeat_interval, status_interval
        self.labels = dict(labels or {})
        self.taints = list(taints or [])
        self.capacity = capacity or machine_capacity()
        self.allocatable = subtract(self.capacity, system_reserved or {})
        self.crashloop_base = crashloop_base
        self.agent_port = agent_port
        self.fake = fake
        self.runtime_version = runtime_version
        self.make_proxier = make_proxier      # pod_cidr -> Proxier, or None (no service proxy)
        self.proxier = None
        self.drain: DrainBarrier | None = None   # with a proxier: SIGTERM waits for every node's proxy
        self.drain_timeout = drain_timeout
        self.lease = NodeLease(client, node_name, heartbeat_interval,
                               lambda: self.proxier.applied_rv if self.proxier is not None else 0)
        self.recorder = EventRecorder(client, "kctl-nodeagent", node_name)
        self.config_watch = ConfigWatch(client)     # ConfigMaps/Secrets our pods use (configwatch.py)
        self.workers: dict[str, PodWorker] = {}
        self._worker_tasks: set[asyncio.Task] = set()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._adopted: dict[str, list] = {}
        self.ready = asyncio.Event()          # node registered, network up, informers running
        self._routes_dirty = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self.network_ready = False
        self.node_informer: Informer | None = None
        self.pod_informer: Informer | None = None
        os.makedirs(os.path.join(root_dir, "pods"), exist_ok=True)

    # ------------------------------------------------------------ run
    async def run(self) -> None:
        await self._register()
        sel = "" if not self.fake else f"metadata.name={self.node_name}"
        self.node_informer = Informer(self.client, core_pb2.Node, field_selector=sel)
        self.node_informer.add_handler(on_add=self._node_event, on_update=lambda o, n: self._node_event(n),
                                       on_delete=self._node_event)
        self.pod_informer = Informer(self.client, core_pb2.Pod, field_selector=f"spec.nodeName={self.node_name}")
        self.pod_informer.add_handler(on_add=self._dispatch, on_update=lambda o, n: self._dispatch(n),
                                      on_delete=self._pod_deleted)
        try:
            await run_tasks({
                f"{self.node_name}/events": self.recorder.run(),
                f"{self.node_name}/heartbeat": self.lease.run(),
                f"{self.node_name}/node-status": self._status_loop(),
                f"{self.node_name}/node-informer": self.node_informer.run(),
                f"{self.node_name}/pods": self._pods(),
            }, handle_signals=False)
        finally:
            for t in list(self._worker_tasks):
                t.cancel()
            if self._worker_tasks:
                await asyncio.gather(*self._worker_tasks, return_exceptions=True)
            if self.network is not None:
                self.network.close()

    async def _pods(self) -> None:
        """Network, adoption, then the pod informer and the route loop."""
        self.pod_cidr = await self._wait_pod_cidr()
        self.network = self.make_network(self.pod_cidr)
        await self.network.setup()
        self.network_ready = True
        self._status_dirty.set()
        for info in await self.runtime.list():
            uid = info.labels.get(podspec.LABEL_POD_UID)
            if uid:
                self._adopted.setdefault(uid, []).append(info)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.pod_informer.run(), name=f"{self.node_name}/pod-informer")
            tg.create_task(self._route_loop(), name=f"{self.node_name}/routes")
            if self.make_proxier is not None:
                self.proxier = self.make_proxier(self.pod_cidr)
                services = Informer(self.client, core_pb2.Service)
                slices = Informer(self.client, discovery_pb2.EndpointSlice)
                self.proxier.attach(services, slices)
                self.proxier.on_applied = lambda rv: self.lease.poke()   # publish it on the Lease now
                self.drain = DrainBarrier(self.client, self.node_informer, slices, timeout=self.drain_timeout)
                tg.create_task(services.run(), name=f"{self.node_name}/service-informer")
                tg.create_task(slices.run(), name=f"{self.node_name}/endpointslice-informer")
                tg.create_task(self.proxier.run(), name=f"{self.node_name}/proxy")
                tg.create_task(metrics.watch_loop_lag(self.node_name), name=f"{self.node_name}/loop-lag")
            await self.pod_informer.wait_synced()
            await self._sweep_orphans()
            self.ready.set()
            log.info("node %s ready: pod CIDR %s, %d pods", self.node_name, self.pod_cidr, len(self.workers))

    # ------------------------------------------------------------ node
    def _node_object(self) -> core_pb2.Node:
        node = core_pb2.Node()
        node.metadata.name = self.node_name
        node.metadata.labels.update({"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                                     "kubernetes.io/arch": platform.machine().replace("x86_64", "amd64"),
                                     **self.labels})
        node.metadata.annotations[AGENT_ENDPOINT_ANNOTATION] = f"{self.node_ip}:{self.agent_port}"
        node.metadata.annotations[localpath.LOCAL_PATH_DIR_ANNOTATION] = localpath.storage_dir(self.root_dir)
        node.spec.taints.extend(self.taints)
        if self.pod_cidr_override:
            node.spec.pod_cidr = self.pod_cidr_override
            node.spec.pod_cidrs.append(self.pod_cidr_override)
        return node

    async def _register(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._register_once()
                return
            except (errors.Unavailable, errors.Timeout, errors.Conflict) as exc:
                log.warning("registering node %s: %s (retry in %.1fs)", self.node_name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _register_once(self) -> None:
        want = self._node_object()
        try:
            await self.client.create(want)
            log.info("registered node %s", self.node_name)
        except errors.AlreadyExists:
            node = await self.client.get(core_pb2.Node, self.node_name)
            changed = False
            for k, v in want.metadata.labels.items():
                if node.metadata.labels.get(k) != v:
                    node.metadata.labels[k] = v
                    changed = True
            for key in (AGENT_ENDPOINT_ANNOTATION, localpath.LOCAL_PATH_DIR_ANNOTATION):
                if node.metadata.annotations.get(key) != want.metadata.annotations[key]:
                    node.metadata.annotations[key] = want.metadata.annotations[key]
                    changed = True
            if self.pod_cidr_override and not node.spec.pod_cidr:
                node.spec.pod_cidr = self.pod_cidr_override
                node.spec.pod_cidrs.append(self.pod_cidr_override)
                changed = True
            if changed:
                await self.client.update(node)
            log.info("re-adopted node %s", self.node_name)
            if node.spec.pod_cidr and not self.network_ready:
                # A restarted agent sets its network up again within a second.
                # Posting Ready=False (NetworkNotReady) before that would put the
                # not-ready NoExecute taint on the node and get its pods evicted;
                # the status loop posts as soon as the network is up (or after
                # --node-status-interval if it is not).
                return
        await self._update_node_status()

    def _node_status(self) -> core_pb2.NodeStatus:
        st = core_pb2.NodeStatus(phase="Running")
        st.capacity.update(self.capacity)
        st.allocatable.update(self.allocatable)
        st.addresses.add(type="InternalIP", address=self.node_ip)
        st.addresses.add(type="Hostname", address=self.node_name)
        ni = st.node_info
        ni.kernel_version = platform.release()
        ni.os_image = _os_image()
        ni.operating_system = "linux"
        ni.architecture = self.labels.get("kubernetes.io/arch") or platform.machine().replace("x86_64", "amd64")
        ni.container_runtime_version = self.runtime_version
        ni.kubelet_version = VERSION
        ni.machine_id = self.node_name
        now = _now()
        for ctype, reason in (("MemoryPressure", "KubeletHasSufficientMemory"),
                              ("DiskPressure", "KubeletHasNoDiskPressure"),
                              ("PIDPressure", "KubeletHasSufficientPID")):
            st.conditions.add(type=ctype, status="False", reason=reason,
                              last_heartbeat_time=now, last_transition_time=now)
        if self.network_ready:
            st.conditions.add(type="Ready", status="True", reason="KubeletReady",
                              message="kctl-nodeagent is posting ready status",
                              last_heartbeat_time=now, last_transition_time=now)
        else:
            st.conditions.add(type="Ready", status="False", reason="NetworkNotReady",
                              message="network not ready: waiting for spec.podCIDR / pod network setup",
                              last_heartbeat_time=now, last_transition_time=now)
        return st

    async def _update_node_status(self) -> None:
        node = await self.client.get(core_pb2.Node, self.node_name)
        new = self._node_status()
        for c in new.conditions:           # keep transition times of unchanged conditions
            old = next((o for o in node.status.conditions if o.type == c.type), None)
            if old is not None and old.status == c.status:
                c.last_transition_time.CopyFrom(old.last_transition_time)
        node.status.CopyFrom(new)
        node.metadata.resource_version = ""
        await self.client.update_status(node)

    async def _status_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._status_dirty.wait(), self.status_interval)
            except asyncio.TimeoutError:
                pass
            self._status_dirty.clear()
            metrics.RUNNING_CONTAINERS.labels(self.node_name).set(sum(
                1 for w in self.workers.values() for r in w.records.values()
                if r.cid and r.state is not None and r.state.status == "running"))
            try:
                await self._update_node_status()
            except errors.NotFound:
                await self._register_once()
            except errors.ApiError as exc:
                log.warning("node status update failed: %s", exc)

    async def _wait_pod_cidr(self) -> str:
        while True:
            node = self.node_informer.get("", self.node_name) if self.node_informer.has_synced() else None
            if node is not None and node.spec.pod_cidr:
                return node.spec.pod_cidr
            if node is not None and self.pod_cidr_override:
                return self.pod_cidr_override
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------ routes
    def _node_event(self, node) -> None:
        self._routes_dirty.set()
        if node is not None and node.metadata.name == self.node_name and node.spec.pod_cidr != self.pod_cidr \
                and self.pod_cidr:
            log.warning("node %s podCIDR changed to %r; pods keep %s", self.node_name, node.spec.pod_cidr,
                        self.pod_cidr)

    async def _route_loop(self) -> None:
        while True:
            await self._routes_dirty.wait()
            self._routes_dirty.clear()
            want = {}
            for node in self.node_informer.list():
                if node.metadata.name == self.node_name or not node.spec.pod_cidr:
                    continue
                ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
                if ip:
                    want[ip] = node.spec.pod_cidr
            try:
                changes = await self.network.sync_routes(want)
                if changes["added"] or changes["removed"]:
                    log.info("routes: %s", changes)
            except Exception as exc:  # noqa: BLE001 - retried
                log.warning("route sync failed: %s", exc)
                await asyncio.sleep(1)
                self._routes_dirty.set()

    # ------------------------------------------------------------ pods
    def _dispatch(self, pod: core_pb2.Pod) -> None:
        uid = pod.metadata.uid
        if uid in self._finished:
            return
        w = self.workers.get(uid)
        if w is None:
            w = PodWorker(self, pod, self._adopted.pop(uid, None))
            self._start_worker(w)
        w.update(pod)

    def _pod_deleted(self, pod: core_pb2.Pod) -> None:
        w = self.workers.get(pod.metadata.uid)
        if w is not None:
            w.update(None)

    def _start_worker(self, w: PodWorker) -> None:
        self.workers[w.uid] = w
        metrics.RUNNING_PODS.labels(self.node_name).set(len(self.workers))
        task = asyncio.create_task(w.run(), name=f"pod-{w.key}")
        self._worker_tasks.add(task)

        def done(t: asyncio.Task, uid=w.uid) -> None:
            self._worker_tasks.discard(t)
            if t.cancelled():
                return
            if self.workers.get(uid) is w:
                del self.workers[uid]
            self._finished[uid] = None
            while len(self._finished) > 10000:
                self._finished.popitem(last=False)
            metrics.RUNNING_PODS.labels(self.node_name).set(len(self.workers))
        task.add_done_callback(done)

    async def _sweep_orphans(self) -> None:
        """Containers, sandboxes and pod dirs of pods the API no longer has."""
        for uid, infos in list(self._adopted.items()):
            if uid in self.workers:
                continue
            self._adopted.pop(uid)
            labels = infos[0].labels
            pod = core_pb2.Pod()
            pod.metadata.uid = uid
            pod.metadata.name = labels.get(podspec.LABEL_POD_NAME, uid)
            pod.metadata.namespace = labels.get(podspec.LABEL_POD_NAMESPACE, "default")
            log.info("cleaning up containers of deleted pod %s/%s (%s)", pod.metadata.namespace,
                     pod.metadata.name, uid)
            w = PodWorker(self, pod, infos)
            w.update(None)
            self._start_worker(w)
        for sb in await self.network.list_sandboxes():
            if sb.pod_uid not in self.workers:
                log.info("removing orphan sandbox of pod %s", sb.pod_uid)
                await self.network.delete_sandbox(sb.pod_uid)
        pods_dir = os.path.join(self.root_dir, "pods")
        for uid in os.listdir(pods_dir):
            if uid not in self.workers:
                volumes.teardown(os.path.join(pods_dir, uid))      # tmpfs volumes (none on hollow nodes)
                shutil.rmtree(os.path.join(pods_dir, uid), ignore_errors=True)


def _os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
