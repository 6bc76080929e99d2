"""Node IPAM (Kubernetes' nodeipam range allocator): every node gets a
`spec.podCIDR` (and `podCIDRs`) of --node-cidr-mask-size carved out of
--cluster-cidr, never one already in use, and its range is free again when
the node is deleted.

The set of used ranges is rebuilt from the informer cache (every node's
podCIDR) before the worker starts, so a restarted controller never hands out
a range twice. One worker only: allocations are serialized, and a range is
marked used in memory before the write, released again if the write fails.
"""
from __future__ import annotations

import ipaddress

from machinery import codec, errors

from controllers.base import Controller


class NodeIpamController(Controller):
    name = "nodeipam"

    def __init__(self, client, factory, recorder=None, *, cluster_cidr: str = "10.244.0.0/16",
                 node_mask: int = 24):
        super().__init__(client, factory, recorder, workers=1)
        self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        if node_mask < self.network.prefixlen:
            raise ValueError(f"--node-cidr-mask-size {node_mask} is larger than --cluster-cidr {cluster_cidr}")
        self.node_mask = node_mask
        self.used: set[str] = set()
        self._owner: dict[str, str] = {}       # cidr -> node name
        self._rebuilt = False
        self.node_inf = factory.informer("Node")
        self.node_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), self._deleted)

    def informers(self):
        return [self.node_inf]

    def _deleted(self, node) -> None:
        cidr = node.spec.pod_cidr
        if cidr and self._owner.get(cidr) == node.metadata.name:
            self.used.discard(cidr)
            self._owner.pop(cidr, None)
            self.log.info("released %s of deleted node %s", cidr, node.metadata.name)

    def _rebuild(self) -> None:
        for n in self.node_inf.list():
            if n.spec.pod_cidr:
                self._mark(n.spec.pod_cidr, n.metadata.name)
        self._rebuilt = True

    def _mark(self, cidr: str, node: str) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return
        if net.subnet_of(self.network) if net.version == self.network.version else False:
            self.used.add(str(net))
            self._owner[str(net)] = node

    def allocate(self) -> str | None:
        for sub in self.network.subnets(new_prefix=self.node_mask):
            s = str(sub)
            if s not in self.used:
                return s
        return None

    async def sync(self, key: str) -> None:
        if not self._rebuilt:
            self._rebuild()
        node = self.node_inf.get_by_key(key)
        if node is None:
            return
        if node.spec.pod_cidr:
            self._mark(node.spec.pod_cidr, node.metadata.name)
            return
        cidr = self.allocate()
        if cidr is None:
            self.event(node, "Warning", "CIDRNotAvailable",
                       f"Node {node.metadata.name} status is now: CIDRNotAvailable")
            raise errors.ApiError(f"no free /{self.node_mask} left in {self.network}")
        self.used.add(cidr)
        self._owner[cidr] = node.metadata.name
        new = codec.copy(node)
        new.spec.pod_cidr = cidr
        del new.spec.pod_cidrs[:]
        new.spec.pod_cidrs.append(cidr)
        try:
            await self.client.update(new)
        except Exception:
            self.used.discard(cidr)
            self._owner.pop(cidr, None)
            raise
        self.log.info("node %s: podCIDR %s", node.metadata.name, cidr)
        self.event(node, "Normal", "CIDRAssignmentSucceeded", f"Assigned podCIDR {cidr}")
