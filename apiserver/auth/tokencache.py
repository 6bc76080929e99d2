"""What the token authenticators read on every request, without etcd.

A ServiceAccount token is alive while its ServiceAccount (and the Pod or
Secret it is bound to) exists with the same uid; a bootstrap token while
its Secret in kube-system exists, matches and has not expired. Checking
that against etcd cost one to three reads per request that carries a
bearer token. Kubernetes reads them from informers; kctl reads them from
the apiserver's watch cache, as the RBAC indexes do (apiserver/auth/index.py):

* `WatchedObjects(cache, fallback)` is a getter `(kind, namespace, name) ->
  object | None` over ObjectIndexes of ServiceAccounts, Secrets and Pods
  fed by the watch cache (the Pod index can be shared with the Node
  authorizer's). Until an index has its first list it reads `fallback`
  (the Store).
* The authenticators take it as their `getter` and the Store's getter as
  `recheck`: a token the indexes refuse is checked once more against etcd
  before the 401, so a token for a ServiceAccount created a moment ago
  (TokenRequest read etcd; the index may be a few milliseconds behind) is
  not refused. A deletion reaches the index with the watch event, so a
  revoked token (its ServiceAccount, Pod or bootstrap Secret deleted) stops
  working within the watch's latency, not after a TTL.
* Read-your-writes, as the Priority plugin's class cache keeps it: an
  update or delete of one of these objects that this apiserver admits
  (admission.validate calls `expect`) marks the object pending; until the
  index's copy of it is replaced (or gone), or FENCE_SECONDS passed, it is
  read from the Store. So `kubectl delete sa robot` followed at once by a
  request with robot's token gets 401, never a stale 200.
* `VerifiedCache` keeps what does not change for a given token string:
  the verified claims of a ServiceAccount JWT (signature, issuer,
  audience), for at most `ttl` seconds and never past the token's `exp`,
  `size` entries at most, keyed by the token's SHA-256. Liveness is never
  cached; it is the index lookup above on every request.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from apiserver.auth.index import ObjectIndex

KINDS = ("ServiceAccount", "Secret", "Pod")
FENCE_SECONDS = 10.0
DEFAULT_TTL = 10.0
DEFAULT_SIZE = 4096


class WatchedObjects:
    def __init__(self, indexes: dict[str, ObjectIndex], fallback, clock=time.monotonic,
                 fence: float = FENCE_SECONDS):
        self.indexes, self.fallback = indexes, fallback
        self.clock, self.fence = clock, fence
        self.pending: dict[tuple[str, str, str], tuple[object, float]] = {}

    def expect(self, kind: str, namespace: str, name: str) -> None:
        """This apiserver is about to change or delete the object: read it from the
        Store until the index's copy is replaced."""
        index = self.indexes.get(kind)
        if index is not None:
            self.pending[(kind, namespace, name)] = (index.get(namespace, name), self.clock() + self.fence)

    def _stale(self, kind: str, namespace: str, name: str, index: ObjectIndex) -> bool:
        key = (kind, namespace, name)
        mark = self.pending.get(key)
        if mark is None:
            return False
        before, deadline = mark
        if (before is not None and index.get(namespace, name) is not before) or self.clock() >= deadline:
            del self.pending[key]
            return False
        return True

    @classmethod
    def attach(cls, cache, fallback, shared: dict[str, ObjectIndex] | None = None) -> "WatchedObjects":
        """Indexes following the watch cache's KindCaches (`shared`: indexes already attached)."""
        shared = shared or {}
        return cls({k: shared.get(k) or ObjectIndex(k).attach(cache[k]) for k in KINDS}, fallback)

    async def __call__(self, kind: str, namespace: str, name: str):
        index = self.indexes.get(kind)
        if index is None or not index.ready or self._stale(kind, namespace, name, index):
            return await self.fallback(kind, namespace, name)
        return index.get(namespace, name)


class VerifiedCache:
    """token -> a value known valid until an expiry (monotonic seconds); LRU, bounded."""

    def __init__(self, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE, clock=time.time):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: OrderedDict[bytes, tuple[object, float]] = OrderedDict()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str):
        key = self._key(token)
        hit = self._items.get(key)
        if hit is None:
            return None
        if self.clock() >= hit[1]:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return hit[0]

    def put(self, token: str, value, not_after: float | None = None) -> None:
        """Keep `value` for ttl seconds, or until `not_after` (a time of `clock`) if sooner."""
        if self.ttl <= 0:
            return
        until = self.clock() + self.ttl
        if not_after is not None:
            until = min(until, not_after)
        self._items[self._key(token)] = (value, until)
        self._items.move_to_end(self._key(token))
        while len(self._items) > self.size:
            self._items.popitem(last=False)
