"""etcd leases for objects that expire (Events, `--event-ttl`), shared the
way Kubernetes' apiserver shares them (storage/etcd3/lease_manager.go).

A write of an object with a time to live attaches the key to an etcd lease;
when the lease runs out etcd deletes the key, and watchers see DELETED like
any other delete.  Granting a lease per write would double the writes to
etcd, so one lease is reused for writes that come within a short window:
it is granted with `ttl + reuse` seconds (reuse = 5% of the ttl, at most 60
s), and a later write takes it as long as it still outlives that write's
own ttl and is not older than the window, for at most 1,000 objects.  An
object so lives between its ttl and its ttl plus the window, as in
Kubernetes.  Writes waiting for a grant wait together (one grant, not one
each)."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

REUSE_SECONDS = 60          # Kubernetes' defaultLeaseReuseDurationSeconds
REUSE_PERCENT = 0.05        # ... and its LeaseReuseDurationPercent
MAX_OBJECTS = 1000          # defaultLeaseMaxObjectCount


class LeaseManager:
    def __init__(self, grant: Callable[[int], Awaitable[int]], *, reuse_seconds: int = REUSE_SECONDS,
                 reuse_percent: float = REUSE_PERCENT, max_objects: int = MAX_OBJECTS,
                 clock: Callable[[], float] = time.monotonic):
        """`grant(ttl)` asks etcd for a lease of `ttl` seconds and returns its ID."""
        self._grant = grant
        self.reuse_seconds = reuse_seconds
        self.reuse_percent = reuse_percent
        self.max_objects = max_objects
        self._clock = clock
        self._lock = asyncio.Lock()
        self._id = 0
        self._expires = 0.0          # by self._clock
        self._attached = 0
        self.granted = 0             # leases asked of etcd (for tests and the benchmarks)

    def _reuse(self, ttl: int) -> int:
        return min(int(self.reuse_percent * ttl), self.reuse_seconds)

    async def lease(self, ttl: int) -> int:
        """A lease ID that lives at least `ttl` seconds from now."""
        async with self._lock:
            now = self._clock()
            reuse = self._reuse(ttl)
            valid = now + ttl < self._expires
            sufficient = now + ttl + reuse >= self._expires
            self._attached += 1
            if self._id and valid and sufficient and self._attached <= self.max_objects:
                return self._id
            lease_id = await self._grant(ttl + reuse)
            self._id, self._expires, self._attached = lease_id, now + ttl + reuse, 1
            self.granted += 1
            return lease_id
