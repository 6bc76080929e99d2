"""kctl-dns puts itself behind `kube-system/kube-dns`.

Who maintains the Service and its Endpoints: kctl-dns itself, the way the
apiserver keeps the `kubernetes` Service (apiserver/bootstrap.py). The
Service has no selector — kctl-dns is not a pod, it runs on the control
plane's own address — so the Endpoints controller leaves it alone, and the
processes that know where they listen write their addresses:

* the Service is created when missing: ClusterIP `--cluster-ip`
  (10.96.0.10, the conventional one; the lab passes the 10th address of its
  service CIDR), ports `dns` 53/UDP, `dns-tcp` 53/TCP, `metrics` 9153/TCP,
  CoreDNS's labels (k8s-app=kube-dns, kubernetes.io/name=CoreDNS,
  kubernetes.io/cluster-service=true). An existing Service is left as it is
  (an operator may have made it);
* the Endpoints are the live kctl-dns instances, kept by the lease
  reconciler the apiserver uses too (machinery/leaseendpoints.py): each
  instance renews a Lease `kctl-dns-<address>` in the Service's namespace
  (label kctl.io/dns-endpoint=true, holder = its address, duration
  `--lease-ttl`, its ports in an annotation) every `--register-interval`
  seconds and writes the Endpoints as the holders of the live Leases, one
  subset per port list (dns/dns-tcp = the listen port, metrics = the
  metrics port when /metrics is on). An Endpoints object deleted or
  rewritten by hand heals at the next tick.

With several instances (one per control-plane host), a crashed one on a
host that never comes back leaves the Endpoints once its Lease has not
changed for `--lease-ttl` seconds, instead of taking a share of the queries
for ever; one that stops cleanly deletes its Lease and takes its address
out at once. One Lease per address: two instances on the same address
would share it (give each its own address). RBAC: system:kube-dns may
create, get, list, update and delete Leases in kube-system
(apiserver/auth/bootstrappolicy.py), and admission holds it to the ones
named kctl-dns-* (DNSRestriction, apiserver/admission_noderestriction.py).
"""
from __future__ import annotations

import logging
import time

from machinery import errors, kinds
from machinery.leaseendpoints import DNS_LEASE_PREFIX, ClientObjects, LeaseEndpoints

log = logging.getLogger("kctl.dns.register")

INTERVAL = 10.0
LEASE_TTL = 15
LEASE_PREFIX, LEASE_LABEL = DNS_LEASE_PREFIX, "kctl.io/dns-endpoint"
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}
SERVICE_PORTS = (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP"))


class Registration:
    def __init__(self, client, service: tuple[str, str], cluster_ip: str, address: str,
                 dns_port: int, metrics_port: int | None, *, interval: float = INTERVAL,
                 lease_ttl: int = LEASE_TTL, clock=time.time):
        self.client = client
        self.namespace, self.name = service
        self.cluster_ip, self.address = cluster_ip, address
        self.ports = [("dns", dns_port, "UDP"), ("dns-tcp", dns_port, "TCP")]
        if metrics_port:
            self.ports.append(("metrics", metrics_port, "TCP"))
        self.interval, self.registered = interval, False
        self.endpoints = LeaseEndpoints(ClientObjects(client), service, address, self.ports,
                                        lease_namespace=self.namespace, lease_prefix=LEASE_PREFIX,
                                        lease_label=LEASE_LABEL, ttl=lease_ttl, labels=LABELS, clock=clock)

    async def ensure_service(self) -> None:
        try:
            await self.client.get("Service", self.name, self.namespace)
            return
        except errors.NotFound:
            pass
        svc = kinds.new("Service")
        svc.metadata.name, svc.metadata.namespace = self.name, self.namespace
        svc.metadata.labels.update(LABELS)
        svc.spec.cluster_ip = self.cluster_ip
        for name, port, proto in SERVICE_PORTS:
            p = svc.spec.ports.add(name=name, port=port, protocol=proto)
            p.target_port.int_val = port            # informative: the Endpoints carry the real ports
        try:
            svc = await self.client.create(svc)
            log.info("created service %s/%s, ClusterIP %s", self.namespace, self.name, svc.spec.cluster_ip)
        except errors.AlreadyExists:
            pass

    async def register(self) -> None:
        """Ensure the Service (with a --cluster-ip), renew this instance's Lease, write the Endpoints."""
        if self.cluster_ip:
            await self.ensure_service()
        await self.endpoints.reconcile()

    async def deregister(self) -> None:
        """Delete this instance's Lease and take its address out of the Endpoints."""
        await self.endpoints.remove()

    async def tick(self) -> None:
        try:
            await self.register()
        except errors.KctlError as exc:
            log.warning("registering in %s/%s: %s", self.namespace, self.name, exc)
            return
        if not self.registered:
            log.info("serving behind %s/%s as %s", self.namespace, self.name, self.address)
            self.registered = True

    async def run(self) -> None:
        """Register now and every `interval`; deregister when cancelled (shutdown)."""
        await self.endpoints.keep(self.tick, self.interval)
