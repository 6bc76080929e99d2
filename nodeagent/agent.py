"""The node agent: registration, Lease heartbeats, node status, pod workers, routes.

``Agent.run()`` is the one readable entry point (design §6.1):

1. register (or re-adopt) our ``Node`` (nodeagent/noderegistration.py, which
   also posts the node status): labels, taints, capacity/allocatable,
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
   localpath.py); objects pods use: configwatch.py; the Services for pods'
   env are watched from agent start to stop (serviceenv.py);
5. with a service proxy (``make_proxier``, nodeagent/proxy.py): once the pod
   CIDR is known, a ``Proxier`` fed by that Service informer and an
   EndpointSlice informer (all namespaces); the slices' informer and
   ``proxier.run()`` are named tasks of the same group.  The Lease heartbeat carries the slices' resourceVersion
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
import shutil

from machinery.events import EventRecorder
from machinery.informer import Informer
from machinery.pb import core_pb2, discovery_pb2
from machinery.runner import run_tasks
from nodeagent import metrics, podspec, volumes
from nodeagent.configwatch import ConfigWatch
from nodeagent.drain import DrainBarrier
from nodeagent.lease import NodeLease
from nodeagent.serviceenv import ServiceEnv
from nodeagent.noderegistration import (AGENT_ENDPOINT_ANNOTATION, VERSION, NodeRegistration,  # noqa: F401
                                        machine_capacity, subtract)  # (re-exported)
from nodeagent.podfiles import DnsConfigurer
from nodeagent.podworker import PodWorker

log = logging.getLogger("kctl.nodeagent")

AGENT_PORT = 10250


class Agent(NodeRegistration):
    """One node's agent; registering the Node and posting its status is
    NodeRegistration's part (nodeagent/noderegistration.py)."""

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
        self.recorder = EventRecorder(client, "kubelet", node_name)    # `From: kubelet`, as Kubernetes shows it
        self.config_watch = ConfigWatch(client)     # ConfigMaps/Secrets our pods use (configwatch.py)
        self.service_env = ServiceEnv(client)    # every Service: pods' env, and the proxy's (serviceenv.py)
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
        self.service_env.start()          # listed before the first pod needs it; closed below
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
            self.service_env.close()
            self.config_watch.close()          # the pods' ConfigMap/Secret watches (their files stay)
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
                services = self.service_env.informer           # one Service watch for env and proxy
                slices = Informer(self.client, discovery_pb2.EndpointSlice)
                self.proxier.attach(services, slices)
                self.proxier.on_applied = lambda rv: self.lease.poke()   # publish it on the Lease now
                self.drain = DrainBarrier(self.client, self.node_informer, slices, timeout=self.drain_timeout)
                tg.create_task(slices.run(), name=f"{self.node_name}/endpointslice-informer")
                tg.create_task(self.proxier.run(), name=f"{self.node_name}/proxy")
                tg.create_task(metrics.watch_loop_lag(self.node_name), name=f"{self.node_name}/loop-lag")
            await self.pod_informer.wait_synced()
            await self._sweep_orphans()
            self.ready.set()
            log.info("node %s ready: pod CIDR %s, %d pods", self.node_name, self.pod_cidr, len(self.workers))

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

