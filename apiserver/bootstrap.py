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
  apiservers alive now, with the lease reconciler of machinery/
  leaseendpoints.py (after pkg/controlplane/reconcilers/lease.go, shared
  with kctl-dns): each apiserver renews a Lease
  `kube-system/kctl-apiserver-<address>` (label kctl.io/apiserver-endpoint,
  its ports in an annotation) with a LEASE_TTL duration, and writes into the
  Endpoints the holders of every live such Lease, sorted. A crashed
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

from apiserver import objects
from machinery import errors, kinds
from machinery.leaseendpoints import LeaseEndpoints
from machinery.pb import api_pb2

log = logging.getLogger("kctl-apiserver.bootstrap")

NAMESPACE, NAME = "default", "kubernetes"
LEASE_NAMESPACE = "kube-system"
LEASE_LABEL = "kctl.io/apiserver-endpoint"
LEASE_PREFIX = "kctl-apiserver-"
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


class KubernetesService:
    def __init__(self, store, service_cidr: str, listen: str, https_listen: str | None = None, *,
                 interval: float = INTERVAL, lease_ttl: int = LEASE_TTL, clock=time.time):
        self.store = store
        self.cluster_ip = service_ip(service_cidr)
        self.address = endpoint_address(listen)
        self.port = int(listen.rpartition(":")[2])
        self.https_port = int(https_listen.rpartition(":")[2]) if https_listen else None
        self.interval = interval
        self.objects = StoreObjects(store)
        self.endpoints = LeaseEndpoints(
            self.objects, (NAMESPACE, NAME), self.address,
            [(name, target, "TCP") for name, _, target in self.targets()],
            lease_namespace=LEASE_NAMESPACE, lease_prefix=LEASE_PREFIX, lease_label=LEASE_LABEL,
            ttl=lease_ttl, clock=clock) if self.address else None

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
        svc = await self.objects.get("Service", NAMESPACE, NAME)
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
    async def reconcile(self) -> None:
        await self.ensure_service()
        if self.endpoints:
            await self.endpoints.reconcile()

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
        if self.endpoints:
            await self.endpoints.keep(self._reconcile_logged, self.interval, first=False)
            return
        while True:
            await asyncio.sleep(self.interval)
            await self._reconcile_logged()


class StoreObjects:
    """machinery.leaseendpoints' `objects` adapter over the apiserver's Store."""

    def __init__(self, store):
        self.store = store

    async def get(self, kind: str, namespace: str, name: str):
        info = kinds.BY_KIND[kind]
        try:
            any_ = await self.store.get(info, namespace, name)
        except errors.NotFound:
            return None
        obj = kinds.new(info)
        any_.Unpack(obj)
        return obj

    async def create(self, obj) -> None:
        await self.store.create(obj)

    async def update(self, obj) -> None:
        await self.store.update(obj)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self.store.delete(api_pb2.DeleteRequest(kind=kind, namespace=namespace, name=name),
                                kinds.BY_KIND[kind])

    async def list(self, kind: str, namespace: str, label_selector: str) -> list:
        info = kinds.BY_KIND[kind]
        out = []
        for any_ in (await self.store.list(info, objects.Filter(info, namespace, label_selector))).items:
            obj = kinds.new(info)
            any_.Unpack(obj)
            out.append(obj)
        return out
