"""Endpoints equal to the instances alive now: the lease endpoint reconciler.

A selector-less Service served by processes that are not pods (the
apiserver's `default/kubernetes`, apiserver/bootstrap.py; kctl-dns's
`kube-system/kube-dns`, clusterdns/register.py) has nobody to take a dead
instance out of its Endpoints. Kubernetes solves this for the apiserver with
the lease reconciler (pkg/controlplane/reconcilers/lease.go); this is the
same idea with kctl's own objects, shared by both users:

* every instance renews a Lease `<prefix><address>` (dots and colons as
  dashes) in the lease namespace, labelled `<label>=true`, holderIdentity =
  its address, leaseDurationSeconds = `ttl`, and its own endpoint ports in
  the annotation `kctl.io/endpoint-ports` (JSON list of [name, port,
  protocol]; a Lease without it, e.g. written by an older apiserver, is
  served on the reconciling instance's ports);
* after renewing, it writes the Endpoints as the holders of every live
  Lease: one subset per port list, addresses sorted. Nothing else is kept:
  addresses a human or an older version added are dropped;
* `remove()` (a clean stop) deletes its Lease, then rewrites the Endpoints
  without itself at once, and stops reconciling (lease.go's
  StopReconciling), so a tick racing with the shutdown cannot put it back.

Live is judged as client-go's leader election does (machinery/
leaderelection.py), not from renewTime: a Lease is live while its
resourceVersion changed less than its leaseDurationSeconds ago, measured on
OUR clock from the moment WE saw the change, so a holder on a host whose
clock is off is neither dropped nor kept forever. Only a Lease we see for
the first time (this instance just started) is judged by its renewTime
(taken as no later than now): a long-dead peer is not brought back, and a
live peer whose clock is more than a TTL behind is left out until its next
renewal. renewTime is written on every renewal (`kctl get leases` shows it).
Expired Leases are left in place (Kubernetes' etcd TTL deletes them); a
host that comes back renews the same Lease.

Writes are read-modify-write on resourceVersion; an Endpoints conflict (two
instances writing at once) re-reads the Leases and tries again. Storage goes
through a small `objects` adapter (get → object or None, create, update,
delete, list by label) so the apiserver (its Store) and the components (a
machinery.client.Client: `ClientObjects`) run the same code.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time

from machinery import errors, kinds

log = logging.getLogger("kctl.leaseendpoints")

DNS_LEASE_PREFIX = "kctl-dns-"     # kctl-dns's Leases (clusterdns/register.py); the apiserver's DNSRestriction
                                   # admission holds the DNS identities to this prefix

PORTS_ANNOTATION = "kctl.io/endpoint-ports"
ATTEMPTS = 5
REMOVE_TIMEOUT = 3.0

Port = tuple[str, int, str]          # (name, port, protocol)


class ClientObjects:
    """The `objects` adapter over a machinery.client.Client (or FakeClient)."""

    def __init__(self, client):
        self.client = client

    async def get(self, kind: str, namespace: str, name: str):
        try:
            return await self.client.get(kind, name, namespace)
        except errors.NotFound:
            return None

    async def create(self, obj) -> None:
        await self.client.create(obj)

    async def update(self, obj) -> None:
        await self.client.update(obj)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self.client.delete(kind, name, namespace)

    async def list(self, kind: str, namespace: str, label_selector: str) -> list:
        items, _ = await self.client.list(kind, namespace, label_selector=label_selector)
        return items


def lease_name(prefix: str, address: str) -> str:
    return prefix + address.replace(".", "-").replace(":", "-")


def _ports_of(lease, default: tuple[Port, ...]) -> tuple[Port, ...]:
    text = lease.metadata.annotations.get(PORTS_ANNOTATION)
    if text is None:
        return default
    try:
        return tuple((str(n), int(p), str(proto)) for n, p, proto in json.loads(text))
    except (ValueError, TypeError) as exc:
        log.warning("lease %s: annotation %s %r is not a list of [name, port, protocol] (%s); using %s",
                    lease.metadata.name, PORTS_ANNOTATION, text, exc, default)
        return default


class LeaseEndpoints:
    def __init__(self, objects, service: tuple[str, str], address: str, ports, *, lease_namespace: str,
                 lease_prefix: str, lease_label: str, ttl: int, labels: dict | None = None, clock=time.time):
        self.objects = objects
        self.namespace, self.name = service
        self.address, self.ports = address, tuple(tuple(p) for p in ports)
        self.lease_namespace, self.lease_prefix, self.lease_label = lease_namespace, lease_prefix, lease_label
        self.ttl, self.labels, self.clock = ttl, dict(labels or {}), clock
        self.stopped = False
        self._seen: dict[str, tuple[str, float]] = {}      # lease name -> (resourceVersion, when we saw it change)

    @property
    def lease_name(self) -> str:
        return lease_name(self.lease_prefix, self.address)

    async def renew(self) -> None:
        lease = await self.objects.get("Lease", self.lease_namespace, self.lease_name)
        create = lease is None
        now = self.clock()
        if create:
            lease = kinds.new("Lease")
            lease.metadata.name, lease.metadata.namespace = self.lease_name, self.lease_namespace
            lease.spec.acquire_time.FromMicroseconds(int(now * 1e6))
        lease.metadata.labels[self.lease_label] = "true"
        lease.metadata.annotations[PORTS_ANNOTATION] = json.dumps([list(p) for p in self.ports])
        lease.spec.holder_identity = self.address
        lease.spec.lease_duration_seconds = self.ttl
        lease.spec.renew_time.FromMicroseconds(int(now * 1e6))
        await (self.objects.create(lease) if create else self.objects.update(lease))

    async def holders(self) -> dict[str, tuple[Port, ...]]:
        """{address: its ports} of every live Lease."""
        leases = await self.objects.list("Lease", self.lease_namespace, f"{self.lease_label}=true")
        now, seen, out = self.clock(), {}, {}
        for lease in leases:
            name, rv = lease.metadata.name, lease.metadata.resource_version
            if name not in self._seen:      # first sight: its renewTime is all we know (never in our future)
                renewed = lease.spec.renew_time.ToMicroseconds() / 1e6 if lease.spec.HasField("renew_time") else now
                seen[name] = (rv, min(now, renewed))
            else:
                last_rv, when = self._seen[name]
                seen[name] = (rv, when if rv == last_rv else now)
            if not lease.spec.holder_identity:
                continue
            if seen[name][1] + lease.spec.lease_duration_seconds >= now:
                out[lease.spec.holder_identity] = _ports_of(lease, self.ports)
        self._seen = seen
        return out

    def desired(self, holders: dict[str, tuple[Port, ...]]):
        """The Endpoints' subsets: one per port list (in order of first address), addresses sorted."""
        ep = kinds.new("Endpoints")
        groups: dict[tuple[Port, ...], list[str]] = {}
        for address in sorted(holders, key=_ip_key):
            groups.setdefault(holders[address], []).append(address)
        for ports, addresses in groups.items():
            subset = ep.subsets.add()
            for ip in addresses:
                subset.addresses.add(ip=ip)
            for name, port, proto in ports:
                subset.ports.add(name=name, port=port, protocol=proto)
        return ep.subsets

    async def write(self, *, without_self: bool = False) -> None:
        """Endpoints := the live holders (without this instance when it is leaving)."""
        for _ in range(ATTEMPTS):
            holders = await self.holders()
            if without_self:
                holders.pop(self.address, None)
            want = self.desired(holders)
            ep = await self.objects.get("Endpoints", self.namespace, self.name)
            create = ep is None
            if create:
                ep = kinds.new("Endpoints")
                ep.metadata.name, ep.metadata.namespace = self.name, self.namespace
                ep.metadata.labels.update(self.labels)
            elif list(ep.subsets) == list(want):
                return
            del ep.subsets[:]
            ep.subsets.extend(want)
            try:
                await (self.objects.create(ep) if create else self.objects.update(ep))
            except (errors.Conflict, errors.AlreadyExists):
                continue
            log.info("endpoints %s/%s: %s", self.namespace, self.name, ", ".join(sorted(holders, key=_ip_key))
                     or "none")
            return
        raise errors.Conflict(f"endpoints {self.namespace}/{self.name}: gave up after {ATTEMPTS} conflicts")

    async def reconcile(self) -> None:
        """Renew this instance's Lease, then write the Endpoints (nothing once removed)."""
        if self.stopped:
            return
        await self.renew()
        await self.write()

    async def remove(self) -> None:
        """Clean stop: delete this instance's Lease, take its address out at once, reconcile no more."""
        self.stopped = True
        try:
            await self.objects.delete("Lease", self.lease_namespace, self.lease_name)
        except errors.NotFound:
            pass
        await self.write(without_self=True)
        log.info("removed %s from endpoints %s/%s", self.address, self.namespace, self.name)

    async def keep(self, tick, interval: float, *, first: bool = True) -> None:
        """Await `tick()` (which reconciles and handles its own errors) every
        `interval` seconds, at once unless first=False; when cancelled (the
        component stops), remove() within REMOVE_TIMEOUT seconds."""
        try:
            if not first:
                await asyncio.sleep(interval)
            while True:
                await tick()
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            try:
                async with asyncio.timeout(REMOVE_TIMEOUT):
                    await self.remove()
            except (errors.KctlError, TimeoutError) as exc:
                log.warning("removing %s from the %s/%s Endpoints: %s", self.address, self.namespace, self.name, exc)
            raise


def _ip_key(address: str):
    try:
        ip = ipaddress.ip_address(address)
        return (ip.version, int(ip), "")
    except ValueError:
        return (99, 0, address)
