"""kctl-dns puts itself behind `kube-system/kube-dns`.

Who maintains the Service and its Endpoints: kctl-dns itself, the way the
apiserver keeps the `kubernetes` Service (apiserver/bootstrap.py). The
Service has no selector — kctl-dns is not a pod, it runs on the control
plane's own address — so the Endpoints controller leaves it alone, and the
one process that knows where it listens writes that address:

* the Service is created when missing: ClusterIP `--cluster-ip`
  (10.96.0.10, the conventional one; the lab passes the 10th address of its
  service CIDR), ports `dns` 53/UDP, `dns-tcp` 53/TCP, `metrics` 9153/TCP,
  CoreDNS's labels (k8s-app=kube-dns, kubernetes.io/name=CoreDNS,
  kubernetes.io/cluster-service=true). An existing Service is left as it is
  (an operator may have made it);
* this instance's address (`--advertise-address`, else the `--listen` host)
  joins the Endpoints, in the subset with its ports (dns/dns-tcp = the
  listen port, metrics = the metrics port when /metrics is on): at start,
  then every INTERVAL seconds (so an Endpoints object deleted or rewritten
  by hand heals), and it is removed on a clean shutdown.

Why not a Lease per instance as the apiserver does: kctl-dns is usually one
process per control-plane host, restarted in place by systemd or the lab on
the same address, which re-registers it; a crashed instance on a host that
never comes back stays listed until an operator removes it (documented in
deploy/README.md). Several instances on several hosts simply add their
addresses. Writes are read-modify-write on resourceVersion, retried on
conflict, so concurrent instances do not lose each other's addresses.
"""
from __future__ import annotations

import asyncio
import logging

from machinery import errors, kinds

log = logging.getLogger("kctl.dns.register")

INTERVAL = 30.0
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}
SERVICE_PORTS = (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP"))
ATTEMPTS = 5


class Registration:
    def __init__(self, client, service: tuple[str, str], cluster_ip: str, address: str,
                 dns_port: int, metrics_port: int | None, *, interval: float = INTERVAL):
        self.client = client
        self.namespace, self.name = service
        self.cluster_ip, self.address = cluster_ip, address
        self.ports = [("dns", dns_port, "UDP"), ("dns-tcp", dns_port, "TCP")]
        if metrics_port:
            self.ports.append(("metrics", metrics_port, "TCP"))
        self.interval = interval

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

    def _with_self(self, ep) -> bool:
        """Add our address to the subset with our ports; True if anything changed."""
        want = sorted(self.ports)
        for subset in ep.subsets:
            if sorted((p.name, p.port, p.protocol) for p in subset.ports) == want:
                if any(a.ip == self.address for a in subset.addresses):
                    return False
                subset.addresses.add(ip=self.address)
                return True
        subset = ep.subsets.add()
        subset.addresses.add(ip=self.address)
        for name, port, proto in self.ports:
            subset.ports.add(name=name, port=port, protocol=proto)
        return True

    def _without_self(self, ep) -> bool:
        changed = False
        for subset in ep.subsets:
            keep = [a for a in subset.addresses if a.ip != self.address]
            if len(keep) != len(subset.addresses):
                changed = True
                del subset.addresses[:]
                subset.addresses.extend(keep)
        keep_subsets = [s for s in ep.subsets if s.addresses or s.not_ready_addresses]
        if len(keep_subsets) != len(ep.subsets):
            del ep.subsets[:]
            ep.subsets.extend(keep_subsets)
        return changed

    async def _edit(self, change) -> None:
        for _ in range(ATTEMPTS):
            try:
                ep = await self.client.get("Endpoints", self.name, self.namespace)
                create = False
            except errors.NotFound:
                ep, create = kinds.new("Endpoints"), True
                ep.metadata.name, ep.metadata.namespace = self.name, self.namespace
                ep.metadata.labels.update(LABELS)
            if not change(ep):
                return
            try:
                await (self.client.create(ep) if create else self.client.update(ep))
                return
            except (errors.Conflict, errors.AlreadyExists):
                continue
        raise errors.Conflict(f"endpoints {self.namespace}/{self.name}: gave up after {ATTEMPTS} conflicts")

    async def register(self) -> None:
        if self.cluster_ip:
            await self.ensure_service()
        await self._edit(self._with_self)

    async def deregister(self) -> None:
        await self._edit(self._without_self)
        log.info("removed %s from endpoints %s/%s", self.address, self.namespace, self.name)

    async def run(self) -> None:
        """Register now and every `interval`; deregister when cancelled (shutdown)."""
        registered = False
        try:
            while True:
                try:
                    await self.register()
                    if not registered:
                        log.info("serving behind %s/%s as %s", self.namespace, self.name, self.address)
                    registered = True
                except errors.KctlError as exc:
                    log.warning("registering in %s/%s: %s", self.namespace, self.name, exc)
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            try:
                async with asyncio.timeout(3):
                    await self.deregister()
            except (errors.KctlError, TimeoutError) as exc:
                log.warning("removing %s from %s/%s: %s", self.address, self.namespace, self.name, exc)
            raise
