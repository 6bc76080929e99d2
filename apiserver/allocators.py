"""ClusterIP and NodePort allocation for Services, kept in etcd.

Every allocated value is a key, `/registry/allocations/clusterips/<ip>` and
`/registry/allocations/nodeports/<port>`, whose value names the owning
service. `plan()` decides what a create/update needs (fills spec.clusterIP,
spec.clusterIPs and nodePorts in the object) and returns the compares and
ops to put into the SAME etcd txn as the Service itself: a compare
"allocation key absent" per new value, a put per new value, a delete per
released one. Two concurrent creates that pick the same value cannot both
commit; the loser's txn fails, crud.py reads which keys were taken and asks
for a new plan avoiding them (a requested value that is taken is an Invalid
error instead). Random candidates are drawn from the free values seen by a
keys-only read, so contention is rare even when the range is nearly full.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from apiserver import storage as st
from machinery import errors
from machinery.errors import FieldError

CLUSTER_IPS = b"/registry/allocations/clusterips/"
NODE_PORTS = b"/registry/allocations/nodeports/"


def ip_key(ip: str) -> bytes:
    return CLUSTER_IPS + ip.encode()


def port_key(port: int) -> bytes:
    return NODE_PORTS + str(port).encode()


@dataclass
class Allocation:
    compares: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    new_keys: list[bytes] = field(default_factory=list)
    requested: set[bytes] = field(default_factory=set)   # chosen by the user: taken → Invalid

    def merge(self, other: "Allocation") -> None:
        self.compares += other.compares
        self.ops += other.ops
        self.new_keys += other.new_keys
        self.requested |= other.requested


def _wants_node_ports(svc) -> bool:
    return svc.spec.type in ("NodePort", "LoadBalancer")


class ServiceAllocator:
    def __init__(self, storage: st.Storage, cidr: str = "10.96.0.0/16", node_ports: str = "30000-32767"):
        self.storage = storage
        self.network = ipaddress.ip_network(cidr, strict=False)
        lo, _, hi = node_ports.partition("-")
        self.port_lo, self.port_hi = int(lo), int(hi or lo)
        self.cidr = str(self.network)
        # The first address is the `kubernetes` service's, as in Kubernetes.
        self.reserved_ip = str(self.network.network_address + 1)

    # ------------------------------------------------------------- helpers
    def _random_ip(self, taken: set[str]) -> str | None:
        size = self.network.num_addresses
        base = int(self.network.network_address)
        for _ in range(64):  # sparse ranges: random probing
            ip = str(ipaddress.ip_address(base + random.randrange(2, size - 1)))
            if ip not in taken:
                return ip
        free = [str(ipaddress.ip_address(base + i)) for i in range(2, size - 1)
                if str(ipaddress.ip_address(base + i)) not in taken]
        return random.choice(free) if free else None

    def _random_port(self, taken: set[int]) -> int | None:
        free = [p for p in range(self.port_lo, self.port_hi + 1) if p not in taken]
        return random.choice(free) if free else None

    async def _taken(self, prefix: bytes) -> set[str]:
        kvs, _, _ = await self.storage.range(prefix, keys_only=True)
        return {kv.key[len(prefix):].decode() for kv in kvs}

    # ---------------------------------------------------------------- plan
    async def plan(self, svc, old, owner: bytes, avoid: set[bytes]) -> tuple[Allocation, list[str]]:
        """Fill svc's clusterIP/nodePorts; returns (allocation, warnings).
        Raises errors.Invalid for values that cannot be had."""
        warnings: list[str] = []
        if not svc.spec.type:
            svc.spec.type = "ClusterIP"
        if svc.spec.type == "LoadBalancer":
            warnings.append("kctl has no load-balancer provider: LoadBalancer service "
                            f"{svc.metadata.name} is served as a NodePort service and "
                            "its EXTERNAL-IP stays <pending>")
        problems: list[FieldError] = []
        alloc = Allocation()
        await self._plan_ip(svc, old, owner, avoid, alloc, problems)
        await self._plan_ports(svc, old, owner, avoid, alloc, problems)
        if not problems:
            await self._plan_health_port(svc, old, owner, avoid, alloc, problems)
        if problems:
            raise errors.Invalid.of("Service", svc.metadata.name, problems, kind="Service")
        return alloc, warnings

    async def _plan_ip(self, svc, old, owner, avoid, alloc: Allocation, problems) -> None:
        spec = svc.spec
        old_ip = old.spec.cluster_ip if old is not None else ""
        if spec.type == "ExternalName":                   # a CNAME: no ClusterIP; a type change releases it
            if old_ip and old_ip != "None":
                alloc.ops.append(st.delete(ip_key(old_ip)))
            spec.cluster_ip = ""
            del spec.cluster_ips[:]
            return
        if not spec.cluster_ip and spec.cluster_ips:
            spec.cluster_ip = spec.cluster_ips[0]
        if not spec.cluster_ip and old_ip:
            spec.cluster_ip = old_ip                      # Kubernetes' patchAllocatedValues
        if old is not None and spec.cluster_ip != old_ip:
            problems.append(errors.invalid("spec.clusterIP", spec.cluster_ip, "field is immutable"))
            return
        del spec.cluster_ips[:]
        if spec.cluster_ip == "None":
            if _wants_node_ports(svc):
                problems.append(errors.invalid("spec.clusterIP", "None",
                                               f"may not be set to 'None' for {spec.type} services"))
            spec.cluster_ips.append("None")
            return
        if old is not None and old_ip:
            spec.cluster_ips.append(old_ip)
            return
        if spec.cluster_ip:
            try:
                ip = ipaddress.ip_address(spec.cluster_ip)
            except ValueError:
                problems.append(errors.invalid("spec.clusterIP", spec.cluster_ip,
                                               "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
                return
            if ip not in self.network or ip in (self.network.network_address, self.network.broadcast_address):
                problems.append(errors.invalid(
                    "spec.clusterIP", spec.cluster_ip,
                    f"provided IP is not in the valid range. The range of valid IPs is {self.cidr}"))
                return
            k = ip_key(str(ip))
            if k in avoid:
                problems.append(errors.invalid("spec.clusterIP", spec.cluster_ip, "provided IP is already allocated"))
                return
            alloc.requested.add(k)
        else:
            taken = await self._taken(CLUSTER_IPS) | {self.reserved_ip}
            taken |= {k[len(CLUSTER_IPS):].decode() for k in avoid if k.startswith(CLUSTER_IPS)}
            chosen = self._random_ip(taken)
            if chosen is None:
                raise errors.ApiError("Internal error occurred: failed to allocate a serviceIP: "
                                      f"range {self.cidr} is full")
            spec.cluster_ip = chosen
            k = ip_key(chosen)
        spec.cluster_ips.append(spec.cluster_ip)
        alloc.compares.append(st.absent(k))
        alloc.ops.append(st.put(k, owner))
        alloc.new_keys.append(k)

    async def _plan_ports(self, svc, old, owner, avoid, alloc: Allocation, problems) -> None:
        old_ports = {}
        if old is not None:
            for p in old.spec.ports:
                if p.node_port:
                    old_ports[(p.port, p.protocol or "TCP")] = p.node_port
                    old_ports.setdefault((p.name, None), p.node_port)
        old_set = set(old_ports.values())
        wants = _wants_node_ports(svc)
        seen: dict[tuple[int, str], int] = {}
        keep: set[int] = set()
        taken_now: set[int] | None = None
        for i, p in enumerate(svc.spec.ports):
            path = f"spec.ports[{i}].nodePort"
            proto = p.protocol or "TCP"
            if not wants:
                if p.node_port and p.node_port in old_set:
                    p.node_port = 0          # type changed away from NodePort: released below
                elif p.node_port:
                    problems.append(errors.forbidden(path, f"may not be used when `type` is '{svc.spec.type}'"))
                continue
            if not p.node_port:
                p.node_port = old_ports.get((p.port, proto)) or old_ports.get((p.name, None)) or 0
            if p.node_port:
                if (p.node_port, proto) in seen:
                    problems.append(errors.duplicate(path, p.node_port))
                    continue
                seen[(p.node_port, proto)] = i
                if p.node_port in old_set or p.node_port in keep:
                    keep.add(p.node_port)
                    continue
                if not self.port_lo <= p.node_port <= self.port_hi:
                    problems.append(errors.invalid(path, p.node_port,
                                                   "provided port is not in the valid range. The range of valid "
                                                   f"ports is {self.port_lo}-{self.port_hi}"))
                    continue
                k = port_key(p.node_port)
                if k in avoid:
                    problems.append(errors.invalid(path, p.node_port, "provided port is already allocated"))
                    continue
                alloc.requested.add(k)
            else:
                if taken_now is None:
                    taken_now = {int(x) for x in await self._taken(NODE_PORTS)}
                    taken_now |= {int(k[len(NODE_PORTS):]) for k in avoid if k.startswith(NODE_PORTS)}
                chosen = self._random_port(taken_now | keep | {n for n, _ in seen})
                if chosen is None:
                    raise errors.ApiError("Internal error occurred: failed to allocate a nodePort: "
                                          f"range {self.port_lo}-{self.port_hi} is full")
                p.node_port = chosen
                seen[(chosen, proto)] = i
                k = port_key(chosen)
            keep.add(p.node_port)
            alloc.compares.append(st.absent(k))
            alloc.ops.append(st.put(k, owner))
            alloc.new_keys.append(k)
        for port in old_set - keep:
            alloc.ops.append(st.delete(port_key(port)))

    async def _plan_health_port(self, svc, old, owner, avoid, alloc: Allocation, problems) -> None:
        """healthCheckNodePort, from the node port range, for LoadBalancer services with
        externalTrafficPolicy Local (Kubernetes' NeedsHealthCheck): kept across updates, chosen
        when not given, released when no longer needed."""
        spec = svc.spec
        had = old.spec.health_check_node_port if old is not None else 0
        if not (spec.type == "LoadBalancer" and spec.external_traffic_policy == "Local"):
            if spec.health_check_node_port == had:
                spec.health_check_node_port = 0
            if had:
                alloc.ops.append(st.delete(port_key(had)))
            return
        spec.health_check_node_port = spec.health_check_node_port or had
        port = spec.health_check_node_port
        if port and port == had:
            return
        if had:
            alloc.ops.append(st.delete(port_key(had)))
        in_use = {p.node_port for p in spec.ports}
        if port:
            k = port_key(port)
            if not self.port_lo <= port <= self.port_hi or port in in_use or k in avoid:
                problems.append(errors.invalid("spec.healthCheckNodePort", port, "provided port is already allocated"
                                               if self.port_lo <= port <= self.port_hi else
                                               f"provided port is not in the valid range. The range of valid ports "
                                               f"is {self.port_lo}-{self.port_hi}"))
                return
            alloc.requested.add(k)
        else:
            taken = {int(x) for x in await self._taken(NODE_PORTS)} | in_use
            taken |= {int(k[len(NODE_PORTS):]) for k in avoid if k.startswith(NODE_PORTS)}
            port = self._random_port(taken)
            if port is None:
                raise errors.ApiError("Internal error occurred: failed to allocate a healthCheckNodePort: "
                                      f"range {self.port_lo}-{self.port_hi} is full")
            spec.health_check_node_port, k = port, port_key(port)
        alloc.compares.append(st.absent(k))
        alloc.ops.append(st.put(k, owner))
        alloc.new_keys.append(k)

    # ------------------------------------------------------------- release
    @staticmethod
    def release(svc) -> list:
        """Ops that free everything a stored service holds (same txn as its delete)."""
        ops = []
        if svc.spec.cluster_ip and svc.spec.cluster_ip != "None":
            ops.append(st.delete(ip_key(svc.spec.cluster_ip)))
        for port in {p.node_port for p in svc.spec.ports if p.node_port} | {svc.spec.health_check_node_port} - {0}:
            ops.append(st.delete(port_key(port)))
        return ops
