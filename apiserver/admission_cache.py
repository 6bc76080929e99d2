"""What admission plugins read from the apiserver's watch cache instead of
etcd, without losing read-your-writes.

A `FencedIndex` is an ObjectIndex (apiserver/auth/index.py, fed by one
KindCache) plus the writes of that kind this apiserver admitted and the
index does not show yet. Kubernetes' admission plugins read informers, so
an object written a moment ago may be missing or old there for a moment;
kctl keeps read-your-writes instead, so a script may create or relabel an
object and at once write what depends on it: every admitted write (create,
update, delete; not dry runs) is noted by name with its `view` — what
admission will read of it (None: gone) — and while any noted write is not
yet in the index, `reader()` is None and the plugin reads etcd. A note is
dropped when the index shows its view, or after FENCE_SECONDS (a write that
failed after admission, or a cache that lags that much: then kctl lags like
Kubernetes). Until the index has its first list, and on a Store without
one (unit tests, tools), plugins read etcd as well. Writes through another
apiserver are seen when the cache has them, as in Kubernetes.

Used by the Priority plugin (PriorityClasses, apiserver/admission_priority.py),
PodSecurity (namespace labels, apiserver/podsecurity/admission.py) and the
ServiceAccount plugin (the pod's account, apiserver/serviceaccount/admission.py):
each was one etcd read per pod create.
"""
from __future__ import annotations

import time
from typing import Callable

from apiserver.auth.index import ObjectIndex

FENCE_SECONDS = 10.0


class FencedIndex:
    """An ObjectIndex admission reads, current unless it has not synced or a
    write this apiserver admitted is not in it yet."""

    def __init__(self, index: ObjectIndex, view: Callable, clock=time.monotonic, fence: float = FENCE_SECONDS):
        self.index, self.view, self.clock, self.fence = index, view, clock, fence
        self.pending: dict[tuple[str, str], tuple[object, float]] = {}     # (namespace, name) ->

    @classmethod
    def follow(cls, cache, kind: str, view: Callable) -> "FencedIndex":
        """Follow the `kind` KindCache of an apiserver.watchcache.WatchCache."""
        return cls(ObjectIndex(kind).attach(cache[kind]), view)

    def expect(self, namespace: str, name: str, obj) -> None:
        """An admitted write: `obj` is what it stores (None for a delete)."""
        key = (namespace if self.index.info.namespaced else "", name)
        self.pending[key] = (self.view(obj) if obj is not None else None, self.clock() + self.fence)

    def note(self, req) -> None:
        """After the validating phase admitted `req` (an admission.Request of this index's kind)."""
        if not req.dry_run:
            meta = (req.obj if req.obj is not None else req.old).metadata
            self.expect(meta.namespace, meta.name, req.obj)

    def current(self) -> bool:
        if not self.index.ready:
            return False
        now = self.clock()
        for key, (want, deadline) in list(self.pending.items()):
            obj = self.index.get(*key)
            if (self.view(obj) if obj is not None else None) == want or now >= deadline:
                del self.pending[key]
        return not self.pending

    def reader(self) -> ObjectIndex | None:
        """The index when it is current, else None (read etcd)."""
        return self.index if self.current() else None
