"""The `default/kubernetes` Service and its Endpoints, kept by the apiserver itself.

Pods find the API the way Kubernetes pods do: `kubernetes.default.svc`
(through cluster DNS) or the Service's ClusterIP, the first address of the
service CIDR (the allocator keeps it out of random allocation for this).
As Kubernetes' bootstrap controller (pkg/controlplane/controller/
kubernetesservice) does, every apiserver, every INTERVAL seconds:

* creates the Service if it is missing: no selector, port `https` 443/TCP
  → the apiserver's HTTPS API (the Kubernetes HTTP API, what in-cluster
  clients such as the `kubernetes` Python client's load_incluster_config()
  speak with the pod's ServiceAccount token and ca.crt), and port `grpc`
  6443/TCP → the gRPC port (kctl's API, client certificates only); without
  the HTTP API (`--http-listen off`) only `grpc`; labels
  component=apiserver, provider=kubernetes;
  if someone changed its ports or type, they are put back (Kubernetes'
  GetMasterServiceUpdateIfNeeded); the ClusterIP, once allocated, stays;
* keeps the Endpoints of the same name equal to the addresses of the
  apiservers alive now. Liveness is the lease reconciler's idea
  (pkg/controlplane/reconcilers/lease.go) with kctl's own objects: each
  apiserver renews a Lease `kube-system/kctl-apiserver-<address>` (label
  kctl.io/apiserver-endpoint) with a LEASE_TTL duration, and writes into
  the Endpoints the holders of every unexpired such Lease, sorted. A crashed
  apiserver drops out once its Lease expires; one that stops cleanly deletes
  its Lease and rewrites the Endpoints without itself at once (RemoveEndpoints).

The address is the host of `--listen` (the HTTPS API is expected on the
same host: the lab and the systemd set-up give both the same address); an
unspecified address (0.0.0.0, ::) cannot be an endpoint, so then only the
Service is kept, with a warning. The serving certificate names the
ClusterIP and kubernetes.default.svc[.cluster.local] (machinery/pki.py).
Everything goes through the Store (defaulting, validation, allocation), so
the objects are exactly what a client creating them would get. The first
round runs before the apiserver serves (main.py), so no client ever sees a
cluster without the Service; errors are logged and retried at the next
tick: the API keeps serving without them.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

from google.protobuf import timestamp_pb2

from apiserver import objects
from machinery import errors, kinds
from machinery.pb import api_pb2

log = logging.getLogger("kctl-apiserver.bootstrap")

NAMESPACE, NAME = "default", "kubernetes"
LEASE_NAMESPACE = "kube-system"
LEASE_LABEL = "kctl.io/apiserver-endpoint"
SERVICE_PORT, PORT_NAME = 443, "https"            # -> the HTTPS API
GRPC_SERVICE_PORT, GRPC_PORT_NAME = 6443, "grpc"   # -> the gRPC API
INTERVAL = 10.0
LEASE_TTL = 15


def service_ip(cidr: str) -> str:
    """The first address of the service CIDR (Kubernetes' GetIndexedIP(cidr, 1))."""
    return str(ipaddress.ip_network(cidr, strict=False).network_address + 1)


def endpoint_address(listen: str) -> str:
    """The address other hosts reach `--listen` on, "" when it is unspecified."""
    host = listen.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ""
    return "" if ip.is_unspecified else str(ip)


def _lease_name(address: str) -> str:
    return "kctl-apiserver-" + address.replace(".", "-").replace(":", "-")


class KubernetesService:
    def __init__(self, store, service_cidr: str, listen: str, https_listen: str | None = None, *,
                 interval: float = INTERVAL, lease_ttl: int = LEASE_TTL, clock=time.time):
        self.store = store
        self.cluster_ip = service_ip(service_cidr)
        self.address = endpoint_address(listen)
        self.port = int(listen.rpartition(":")[2])
        self.https_port = int(https_listen.rpartition(":")[2]) if https_listen else None
        self.interval, self.lease_ttl, self.clock = interval, lease_ttl, clock

    async def _get(self, kind: str, namespace: str, name: str):
        info = kinds.BY_KIND[kind]
        try:
            any_ = await self.store.get(info, namespace, name)
        except errors.NotFound:
            return None
        obj = kinds.new(info)
        any_.Unpack(obj)
        return obj

    # ------------------------------------------------------------ Service
    def targets(self) -> list[tuple[str, int, int]]:
        """(port name, Service port, the apiserver's port): https first when served."""
        out = [(PORT_NAME, SERVICE_PORT, self.https_port)] if self.https_port else []
        return out + [(GRPC_PORT_NAME, GRPC_SERVICE_PORT, self.port)]

    def _desired_ports(self, svc) -> None:
        del svc.spec.ports[:]
        for name, port, target in self.targets():
            p = svc.spec.ports.add(name=name, port=port, protocol="TCP")
            p.target_port.int_val = target

    async def ensure_service(self) -> None:
        svc = await self._get("Service", NAMESPACE, NAME)
        if svc is None:
            svc = kinds.new("Service")
            svc.metadata.name, svc.metadata.namespace = NAME, NAMESPACE
            svc.metadata.labels.update({"component": "apiserver", "provider": "kubernetes"})
            svc.spec.type, svc.spec.session_affinity = "ClusterIP", "None"
            svc.spec.cluster_ip = self.cluster_ip
            self._desired_ports(svc)
            try:
                await self.store.create(svc)
                log.info("created service %s/%s (%s: %s)", NAMESPACE, NAME, self.cluster_ip,
                         ", ".join(f"{n} {p} -> {t}" for n, p, t in self.targets()))
            except errors.AlreadyExists:
                pass
            return
        want = kinds.new("Service")
        self._desired_ports(want)
        if svc.spec.type != "ClusterIP" or list(svc.spec.ports) != list(want.spec.ports):
            svc.spec.type = "ClusterIP"
            self._desired_ports(svc)
            await self.store.update(svc)
            log.info("reset the ports of service %s/%s", NAMESPACE, NAME)

    # ---------------------------------------------------------- Endpoints
    async def renew_lease(self) -> None:
        name = _lease_name(self.address)
        lease = await self._get("Lease", LEASE_NAMESPACE, name)
        create = lease is None
        if create:
            lease = kinds.new("Lease")
            lease.metadata.name, lease.metadata.namespace = name, LEASE_NAMESPACE
            lease.metadata.labels[LEASE_LABEL] = "true"
        lease.spec.holder_identity = self.address
        lease.spec.lease_duration_seconds = self.lease_ttl
        lease.spec.renew_time.CopyFrom(timestamp_pb2.Timestamp(seconds=int(self.clock())))
        await (self.store.create(lease) if create else self.store.update(lease))

    async def live_addresses(self) -> list[str]:
        info = kinds.BY_KIND["Lease"]
        resp = await self.store.list(info, objects.Filter(info, LEASE_NAMESPACE, f"{LEASE_LABEL}=true"))
        now, out = self.clock(), set()
        for any_ in resp.items:
            lease = kinds.new(info)
            any_.Unpack(lease)
            if lease.spec.renew_time.seconds + lease.spec.lease_duration_seconds >= now:
                out.add(lease.spec.holder_identity)
        return sorted(out, key=ipaddress.ip_address)

    async def write_endpoints(self, addresses: list[str]) -> None:
        ep = await self._get("Endpoints", NAMESPACE, NAME)
        create = ep is None
        if create:
            ep = kinds.new("Endpoints")
            ep.metadata.name, ep.metadata.namespace = NAME, NAMESPACE
        want = kinds.new("Endpoints")
        if addresses:
            subset = want.subsets.add()
            for ip in addresses:
                subset.addresses.add(ip=ip)
            for name, _, target in self.targets():
                subset.ports.add(name=name, port=target, protocol="TCP")
        if not create and list(ep.subsets) == list(want.subsets):
            return
        del ep.subsets[:]
        ep.subsets.extend(want.subsets)
        await (self.store.create(ep) if create else self.store.update(ep))
        log.info("endpoints %s/%s: %s", NAMESPACE, NAME, ", ".join(addresses) or "none")

    async def reconcile(self) -> None:
        await self.ensure_service()
        if self.address:
            await self.renew_lease()
            await self.write_endpoints(await self.live_addresses())

    async def remove(self) -> None:
        """Clean shutdown: this apiserver's Lease goes, the Endpoints lose its address."""
        info = kinds.BY_KIND["Lease"]
        lease = await self._get("Lease", LEASE_NAMESPACE, _lease_name(self.address))
        if lease is not None:
            await self.store.delete(_delete_request(lease), info)
        await self.write_endpoints([a for a in await self.live_addresses() if a != self.address])

    async def first_sync(self) -> None:
        """One reconcile before the apiserver serves (failures are only logged)."""
        if not self.address:
            log.warning("--listen has no specific address: the %s/%s Endpoints are not maintained", NAMESPACE, NAME)
        await self._reconcile_logged()

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except (errors.KctlError, ValueError) as exc:
            log.warning("reconciling service %s/%s: %s", NAMESPACE, NAME, exc)

    async def run(self) -> None:
        """Reconcile every `interval` (the first one is first_sync's); on
        cancellation (shutdown) take this apiserver out of the Endpoints."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self._reconcile_logged()
        except asyncio.CancelledError:
            if self.address:
                try:
                    async with asyncio.timeout(3):
                        await self.remove()
                except (errors.KctlError, TimeoutError) as exc:
                    log.warning("removing %s from the %s/%s Endpoints: %s", self.address, NAMESPACE, NAME, exc)
            raise


def _delete_request(obj):
    return api_pb2.DeleteRequest(kind="Lease", namespace=obj.metadata.namespace, name=obj.metadata.name)
