"""The node agent's own Node: registration, re-adoption and node status.

Why apart from nodeagent/agent.py: the Agent runs pods; this part speaks
for the node itself (design §6.1, steps 1 and 2 of ``Agent.run()``), and it
is the only code that writes the Node object: labels and the annotations
``kctl.io/agent-endpoint`` and ``storage.kctl.io/local-path-dir``
(localpath.py) at registration, capacity/allocatable, addresses, nodeInfo
and conditions in the status.

How: ``NodeRegistration`` is a mixin of ``Agent`` with no state of its own;
it reads the Agent's fields (client, node_name, node_ip, labels, taints,
capacity, allocatable, pod_cidr_override, network_ready, workers,
node_informer, the ``_status_dirty`` event). ``_register`` retries until
the Node exists (created, or an existing one re-adopted and updated);
``_status_loop`` posts the status every ``status_interval`` or when poked,
re-registering a Node deleted meanwhile; ``_wait_pod_cidr`` waits for the
node IPAM's ``spec.podCIDR``. ``machine_capacity`` and ``subtract`` give
capacity and allocatable (agent.py re-exports them).
"""
from __future__ import annotations

import asyncio
import logging
import os
import platform

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import errors
from machinery.pb import core_pb2
from nodeagent import localpath, metrics

log = logging.getLogger("kctl.nodeagent")

AGENT_ENDPOINT_ANNOTATION = "kctl.io/agent-endpoint"
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


class NodeRegistration:
    """Agent's half that registers the Node and keeps its status posted."""

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


def _os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
