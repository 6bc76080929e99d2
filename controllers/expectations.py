"""Expectations: what a controller has asked the apiserver to do and not yet
seen in its informer cache (client-go's ControllerExpectations and
UIDTrackingControllerExpectations).

Why: a sync decides from the informer cache. Right after it creates 5 pods
the cache may not show them yet; a second sync would see the old count and
create 5 more. So before the writes a sync records "expect 5 adds" (or "expect
these pod UIDs to go") for its key; the pod informer's handlers lower the
counts as the events arrive; and `satisfied(key)` is False until they reach
zero, so a sync that runs in between only recomputes status and does not
create or delete anything. A write that fails lowers the count itself (the
event will never come). Records older than `ttl` count as satisfied, so a
lost event can delay a controller but never wedge it.

Concurrency: everything runs on one event loop and no method awaits, so each
call is atomic with respect to the handlers and the (single per key) sync.
A restarted controller starts with no records: it first waits for its
informers to sync (a fresh list), so there is nothing to expect.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

EXPECTATIONS_TTL = 300.0


@dataclass
class _Record:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    stamp: float = 0.0


class Expectations:
    def __init__(self, ttl: float = EXPECTATIONS_TTL, clock=time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._records: dict[str, _Record] = {}

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        if rec.adds <= 0 and not rec.deletes:
            return True
        return self.clock() - rec.stamp > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        rec = self._records.setdefault(key, _Record())
        rec.adds, rec.stamp = n, self.clock()

    def expect_deletions(self, key: str, uids) -> None:
        rec = self._records.setdefault(key, _Record())
        rec.deletes, rec.stamp = set(uids), self.clock()

    def creation_observed(self, key: str, n: int = 1) -> None:
        rec = self._records.get(key)
        if rec is not None and rec.adds > 0:
            rec.adds = max(0, rec.adds - n)

    def deletion_observed(self, key: str, uid: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.deletes.discard(uid)

    def pending(self, key: str) -> tuple[int, int]:
        rec = self._records.get(key)
        return (rec.adds, len(rec.deletes)) if rec else (0, 0)

    def delete(self, key: str) -> None:
        self._records.pop(key, None)
