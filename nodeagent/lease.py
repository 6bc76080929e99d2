"""The node's heartbeat: its Lease ``kube-node-lease/<node>``, renewed every ``interval``.

As the kubelet's nodelease controller: get (or create, with the namespace if
missing) the Lease once, then update ``renewTime`` every interval; an error
forgets the cached copy so the next round reads it again.  The Lease also
carries, as the annotation ``kctl.io/proxy-applied-rv``, the EndpointSlice
resourceVersion the node's proxy has applied (``applied_rv()``;
nodeagent/drain.py says why); ``poke()`` renews at once instead of at the
next interval, which the agent calls when that value advances.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import errors
from machinery.pb import apps_pb2, core_pb2
from nodeagent import metrics
from nodeagent.drain import APPLIED_RV_ANNOTATION

log = logging.getLogger("kctl.nodeagent")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40


def _now() -> Timestamp:
    t = Timestamp()
    t.GetCurrentTime()
    return t


class NodeLease:
    def __init__(self, client, node_name: str, interval: float, applied_rv: Callable[[], int] = lambda: 0):
        self.client, self.node_name, self.interval = client, node_name, interval
        self.applied_rv = applied_rv
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Renew (and publish the applied resourceVersion) now."""
        self._poked.set()

    async def run(self) -> None:
        lease = None
        while True:
            try:
                lease = await self._renew(lease)
                metrics.HEARTBEATS.labels("ok").inc()
            except errors.ApiError as exc:
                metrics.HEARTBEATS.labels("error").inc()
                log.warning("lease renewal failed: %s", exc)
                lease = None
            try:
                await asyncio.wait_for(self._poked.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._poked.clear()

    async def _create(self) -> apps_pb2.Lease:
        lease = apps_pb2.Lease()
        lease.metadata.name, lease.metadata.namespace = self.node_name, LEASE_NAMESPACE
        lease.spec.holder_identity = self.node_name
        lease.spec.lease_duration_seconds = LEASE_DURATION
        lease.spec.renew_time.CopyFrom(_now())
        try:
            return await self.client.create(lease)
        except errors.NotFound:      # namespace missing
            ns = core_pb2.Namespace()
            ns.metadata.name = LEASE_NAMESPACE
            try:
                await self.client.create(ns)
            except errors.AlreadyExists:
                pass
            return await self.client.create(lease)

    async def _renew(self, lease):
        if lease is None:
            try:
                lease = await self.client.get(apps_pb2.Lease, self.node_name, LEASE_NAMESPACE)
            except errors.NotFound:
                return await self._create()
        lease.spec.holder_identity = self.node_name
        lease.spec.lease_duration_seconds = LEASE_DURATION
        lease.spec.renew_time.CopyFrom(_now())
        rv = self.applied_rv()
        if rv:
            lease.metadata.annotations[APPLIED_RV_ANNOTATION] = str(rv)
        return await self.client.update(lease)
