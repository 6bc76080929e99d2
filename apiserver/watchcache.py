"""The watch cache: one etcd watch per kind, fanned out to every client.

Per kind, `KindCache.run()` holds one etcd watch on `/registry/<plural>/`
(with prev_kv) and appends each change to a ring buffer of `size` events
(revision, type, key, object bytes, previous object bytes; objects are
parsed lazily, once, when a selector first needs them). Readers never get
copies: each client's watch is a cursor (a sequence number) into the ring,
advanced by its own task, so a thousand watchers cost a thousand integers.
A client that falls `size` events behind (its cursor was overwritten) is
too slow and its watch ends with TooSlow; the others never wait for it.

Pod watchers are also indexed by `spec.nodeName` (TRIGGERS), as Kubernetes
does: a watch with `spec.nodeName=<node>` is woken only by events whose pod
had or has that node, and reads only those events (the index keeps, per
node, the ring positions of its events). A thousand node agents thus cost
nothing per event that is not theirs; without the index every event woke
every watcher (measured: 1,000 node watchers cut creates from ~650/s to
~17/s; with it they are unaffected).

Ordering and exactly-once come from asyncio's single thread: appending a
batch and waking readers happens without an await in between, and a reader
positions itself (binary search on revision) and reads without awaiting,
so no event can slip between "replay the buffer" and "follow live".

`covered_from` is the revision after which the ring holds every event of
the kind: a watch from rv ≥ covered_from is served from the ring (events
with revision > rv); an older rv (typically after an apiserver restart)
gets a dedicated etcd watch from rv+1 that hands over to the ring as soon
as it reaches covered revisions; if etcd has compacted past rv, Expired.

When the etcd stream breaks (etcd restart), run() re-opens it from the last
event revision it saw, so the ring has no gap (progress notifications only
feed bookmarks: etcd 3.4 may send one before an unsynced watcher's events). Should etcd have compacted past
that revision, the ring is reset and every reader gets Expired (relist);
so it is when an event comes without the previous value a selector needs
(compacted before etcd delivered the change: Event.from_etcd).
A periodic progress request keeps `revision` current on idle kinds, which
is what BOOKMARK events carry.

`latest` keeps, per key, the newest value and revision the ring has seen
(dropped on delete, emptied on reset): an update starts from it instead of
reading etcd (`WatchCache.current`, apiserver/crud.py), as Kubernetes'
GuaranteedUpdate starts from the cacher's object; the update's txn compares
the revision, so a copy that is behind etcd costs a retry, never a lost write.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
from typing import AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError

from apiserver import objects
from apiserver.bookmarks import IdleClock, Ticks
from apiserver import storage as st
from machinery import errors, kinds

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"
PROGRESS_INTERVAL = 5.0


class TooSlow(errors.ApiError):
    """A watcher that fell a whole ring behind; it should watch again from its last revision."""
    reason, http_code, grpc_code = "TooManyRequests", 429, grpc.StatusCode.RESOURCE_EXHAUSTED


class Event:
    __slots__ = ("revision", "type", "key", "raw", "prev_raw", "triggers", "_info", "_obj", "_prev", "_wire")

    def __init__(self, info, revision: int, type_: str, key: bytes, raw: bytes, prev_raw: bytes | None):
        self._info, self.revision, self.type, self.key = info, revision, type_, key
        self.raw, self.prev_raw = raw, prev_raw
        self.triggers: tuple[str, ...] = ()
        self._obj = self._prev = self._wire = None

    def obj(self):
        if self._obj is None:
            self._obj = self._info.message.FromString(self.raw)
        return self._obj

    def prev(self):
        if self._prev is None and self.prev_raw is not None:
            self._prev = self._info.message.FromString(self.prev_raw)
        return self._prev

    def encoded(self, seen: tuple[str, bytes], build):
        """build(type, raw) for `seen` (what convert() gave a watcher), made once
        and shared by every watcher that sees this change the same way, as
        Kubernetes' watch cache serializes an event once for all of its
        watchers (cachingObject).  The type is the key: for one change, each
        type comes with one value (DELETED: the object, or the old one when
        it left the selector, never both).  The result must not be changed."""
        if self._wire is None:
            self._wire = {}
        out = self._wire.get(seen[0])
        if out is None:
            out = self._wire[seen[0]] = build(*seen)
        return out

    @classmethod
    def from_etcd(cls, info, e) -> "Event":
        prev = e.prev_kv.value if e.HasField("prev_kv") else None
        if prev is None and (e.type == st.EVENT_DELETE or e.kv.version > 1):
            # etcd sends no previous value when compaction removed it between the
            # change and its delivery.  Without it no selector can tell whether the
            # watcher saw the object, so, as Kubernetes' watcher (parseEvent), this
            # is no event: the cache resets and its watchers relist (Expired).
            raise st.Compacted(e.kv.mod_revision - 1, 0, f"etcd event received with PrevKv=nil (key="
                                                          f"{e.kv.key.decode(errors='replace')!r}, modRevision="
                                                          f"{e.kv.mod_revision}): its history is compacted")
        if e.type == st.EVENT_DELETE:
            return cls(info, e.kv.mod_revision, DELETED, e.kv.key, prev, prev)
        kind = ADDED if e.kv.version == 1 else MODIFIED
        return cls(info, e.kv.mod_revision, kind, e.kv.key, e.kv.value, prev)


class Bookmark:
    __slots__ = ("revision",)
    type = BOOKMARK

    def __init__(self, revision: int):
        self.revision = revision


def convert(ev: Event, flt: objects.Filter) -> tuple[str, bytes] | None:
    """What a watcher with this filter sees of an event (Kubernetes' rules:
    entering the selector is ADDED, leaving it DELETED with the old object)."""
    try:
        return _convert(ev, flt)
    except DecodeError:          # a value no kctl apiserver wrote: selectors cannot see it
        return None


def _convert(ev: Event, flt: objects.Filter) -> tuple[str, bytes] | None:
    if not ev.key.startswith(flt.key_prefix):
        return None
    if flt.everything:
        return ev.type, ev.raw
    if ev.type == DELETED:
        return (DELETED, ev.raw) if flt.matches_raw(ev.raw, None if ev._obj is None else ev._obj) else None
    cur = flt.maybe(ev.raw) and flt.matches(ev.obj())
    if ev.prev_raw is None:
        return (ADDED, ev.raw) if cur else None
    old = flt.maybe(ev.prev_raw) and flt.matches(ev.prev())
    if cur:
        return (MODIFIED if old else ADDED), ev.raw
    return (DELETED, ev.prev_raw) if old else None


def _pod_node_names(ev: Event) -> tuple[str, ...]:
    """The index value of a pod event: spec.nodeName before and after."""
    new = ev.obj().spec.node_name
    prev = ev.prev()
    old = prev.spec.node_name if prev is not None else new
    return (new,) if old == new else (new, old)


# Kinds whose watchers are indexed, and the field selector path of the index
# (Kubernetes indexes pod watchers by spec.nodeName the same way: every node
# agent watches `spec.nodeName=<itself>`).
TRIGGERS: dict[str, tuple[str, Callable[[Event], tuple[str, ...]]]] = {
    "Pod": ("spec.nodeName", _pod_node_names),
}


class _Revisions:
    """The ring's revisions, oldest first, as a sequence bisect can search."""

    def __init__(self, cache: "KindCache"):
        self.c = cache

    def __len__(self) -> int:
        return self.c.next_seq - self.c.first_seq

    def __getitem__(self, i: int) -> int:
        return self.c.ring[(self.c.first_seq + i) % self.c.size].revision


class KindCache:
    def __init__(self, info: kinds.KindInfo, storage: st.Storage, size: int = 10_000,
                 progress_interval: float = PROGRESS_INTERVAL,
                 on_events: Callable[[list[Event]], None] | None = None,
                 on_reset: Callable[[list], None] | None = None):
        self.info = info
        self.storage = storage
        self.size = size
        self.progress_interval = progress_interval
        self.prefix = objects.prefix(info)
        self.on_events = on_events
        self.on_reset = on_reset
        self.ring: list[Event | None] = [None] * size
        self.latest: dict[bytes, tuple[bytes, int]] = {}    # key -> (newest value, its revision)
        self.first_seq = 0
        self.next_seq = 0
        self.covered_from = 0
        self.revision = 0                  # newest revision known (events or etcd progress)
        self.event_revision = 0            # newest event revision: where a broken watch resumes
        self._progress = 0                 # the last progress notification's revision, not yet trusted
        self.epoch = 0                     # bumped on reset: readers of an older epoch expire
        self.reset_needed = True
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        # The trigger index (see TRIGGERS): value -> seqs of the ring's events
        # that concern it, the last seq evicted per value, a wake-up per value.
        self.trigger_path, self._trigger_fn = TRIGGERS.get(info.kind, (None, None))
        self._index: dict[str, collections.deque[int]] = {}
        self._evicted: dict[str, int] = {}
        self._wake_by: dict[str, asyncio.Event] = {}
        self.ticks = Ticks(lambda: self._notify(tuple(self._wake_by)))   # bookmarks (apiserver.bookmarks)

    # -------------------------------------------------------------- writer
    async def _reset(self) -> None:
        if self.on_reset is not None:
            kvs, rev, _ = await self.storage.range(self.prefix)
            self.on_reset(kvs)
        else:
            rev = await self.storage.revision()
        start = rev                             # the ring covers everything after this
        self.ring = [None] * self.size
        self.latest.clear()
        self.first_seq = self.next_seq
        self._index.clear()
        self._evicted.clear()
        self.covered_from = self.revision = self.event_revision = start
        self._progress = 0
        self.epoch += 1
        self._notify(list(self._wake_by))       # readers of the previous epoch expire

    def _append(self, events: list[Event]) -> set[str]:
        """Add a batch to the ring; returns the trigger values it concerns."""
        touched: set[str] = set()
        latest = self.latest
        for ev in events:
            if ev.type == DELETED:
                latest.pop(ev.key, None)
            else:
                latest[ev.key] = (ev.raw, ev.revision)
            if self.next_seq - self.first_seq == self.size:
                old = self.ring[self.first_seq % self.size]
                self.covered_from = old.revision
                for t in old.triggers:
                    seqs = self._index[t]
                    seqs.popleft()
                    self._evicted[t] = self.first_seq
                    if not seqs:
                        del self._index[t]
                self.first_seq += 1
            if self._trigger_fn is not None:
                try:
                    ev.triggers = self._trigger_fn(ev)
                except DecodeError:
                    log.warning("watch cache %s: undecodable value at %s (revision %d)",
                                self.info.plural, ev.key.decode(errors="replace"), ev.revision)
                for t in ev.triggers:
                    self._index.setdefault(t, collections.deque()).append(self.next_seq)
                touched.update(ev.triggers)
            self.ring[self.next_seq % self.size] = ev
            self.next_seq += 1
        self.event_revision = events[-1].revision
        self.revision = max(self.revision, self.event_revision)
        return touched

    def _notify(self, triggers=()) -> None:
        self._wake.set()
        self._wake = asyncio.Event()
        for t in triggers:
            wake = self._wake_by.pop(t, None)
            if wake is not None:
                wake.set()

    async def run(self) -> None:
        """Follow etcd forever; re-open the watch from the last revision after failures."""
        delay, failing = 0.1, False
        while True:
            try:
                if self.reset_needed:
                    await self._reset()
                    self.reset_needed = False
                    log.info("watch cache %s: following from revision %d", self.info.plural,
                             self.event_revision + 1)
                async with contextlib.aclosing(self.storage.watch(
                        self.prefix, self.event_revision + 1, progress_interval=self.progress_interval)) as stream:
                    async for resp in stream:
                        if failing:
                            log.info("watch cache %s: etcd watch re-established at revision %d",
                                     self.info.plural, self.event_revision + 1)
                        self.ready.set()
                        delay, failing = 0.1, False
                        self._take(resp)
            except st.Compacted as exc:
                log.warning("watch cache %s: %s; resetting, watchers must relist", self.info.plural, exc)
                self.ready.clear()
                self.reset_needed = True
            except errors.ApiError as exc:
                # One warning per outage; the retries are debug noise.
                log.log(logging.DEBUG if failing else logging.WARNING,
                        "watch cache %s: %s; retrying from revision %d", self.info.plural, exc.message,
                        self.event_revision + 1)
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _take(self, resp) -> None:
        """One etcd WatchResponse: its events into the ring (or a progress notification)."""
        touched: set[str] = set()
        if resp.events:
            batch = [Event.from_etcd(self.info, e) for e in resp.events]
            touched = self._append(batch)
            if self.on_events is not None:
                try:
                    self.on_events(batch)
                except DecodeError:
                    log.warning("watch cache %s: undecodable value in a batch", self.info.plural)
        elif not resp.created:
            # A progress notification. etcd 3.4 may send one before
            # events still queued for a lagging watcher, so trust
            # each one only when the next arrives (an interval later).
            if self._progress > self.revision:
                self.revision = self._progress
            self._progress = resp.header.revision
        self._notify(touched)

    # -------------------------------------------------------------- readers
    def covers(self, rv: int) -> bool:
        return self.ready.is_set() and rv >= self.covered_from

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except asyncio.TimeoutError:
            raise errors.Unavailable(f"etcd unavailable: the {self.info.plural} watch cache is not ready") from None

    def _too_slow(self, sent_rev: int) -> TooSlow:
        return TooSlow(f"watch of {self.info.plural} closed: the client fell more than {self.size} "
                       f"events behind; watch again from resourceVersion {sent_rev}")

    async def follow(self, rv: int, bookmark_interval: float | None = None,
                     trigger: str | None = None) -> AsyncIterator[Event | Bookmark]:
        """Every event with revision > rv, in order, then live ones (rv must be
        covered). With a trigger value, only the events the index lists for it."""
        if trigger is not None and self._trigger_fn is not None:
            async for ev in self._follow_indexed(rv, bookmark_interval, trigger):
                yield ev
            return
        epoch = self.epoch
        seq = self.first_seq + bisect.bisect_right(_Revisions(self), rv)
        sent_rev = rv
        idle = IdleClock(bookmark_interval)
        with self.ticks.following(bookmark_interval):
            while True:
                if epoch != self.epoch:
                    raise errors.Expired(f"too old resource version: {rv} ({self.covered_from})")
                if seq < self.first_seq:
                    raise self._too_slow(sent_rev)
                if seq < self.next_seq:
                    ev = self.ring[seq % self.size]
                    seq += 1
                    idle.busy()
                    if ev.revision > rv:
                        sent_rev = ev.revision
                        yield ev
                    continue
                wake = self._wake
                if idle.due() and self.revision > sent_rev:
                    sent_rev = self.revision
                    yield Bookmark(self.revision)
                    continue
                await wake.wait()

    async def _follow_indexed(self, rv: int, bookmark_interval: float | None,
                              trigger: str) -> AsyncIterator[Event | Bookmark]:
        """follow() for a watcher of one trigger value: it is woken only by
        events that concern it, and reads only those (a snapshot of the
        index taken without awaiting, so appends during its yields wait for
        the next round). `cursor` is the next ring seq not yet considered; an
        event of this value evicted at or after the cursor means the watcher
        fell behind."""
        epoch = self.epoch
        cursor = self.first_seq + bisect.bisect_right(_Revisions(self), rv)
        sent_rev = rv
        idle = IdleClock(bookmark_interval)
        with self.ticks.following(bookmark_interval):
            while True:
                if epoch != self.epoch:
                    raise errors.Expired(f"too old resource version: {rv} ({self.covered_from})")
                if self._evicted.get(trigger, -1) >= cursor:
                    raise self._too_slow(sent_rev)
                seqs = self._index.get(trigger)
                end = self.next_seq
                todo = [s for s in seqs if s >= cursor] if seqs else []
                for seq in todo:
                    if seq < self.first_seq:
                        raise self._too_slow(sent_rev)
                    ev = self.ring[seq % self.size]
                    if ev.revision > rv:
                        sent_rev = ev.revision
                        yield ev
                cursor = max(cursor, end)
                if todo or epoch != self.epoch:
                    idle.busy()
                    continue                               # look again before sleeping
                wake = self._wake_by.get(trigger)
                if wake is None:
                    wake = self._wake_by[trigger] = asyncio.Event()
                if idle.due() and self.revision > sent_rev:
                    sent_rev = self.revision
                    yield Bookmark(self.revision)
                    continue
                await wake.wait()

    async def stream(self, rv: int, bookmark_interval: float | None = None,
                     trigger: str | None = None) -> AsyncIterator[Event | Bookmark]:
        """Events after rv: from the ring when it covers rv, otherwise from a
        dedicated etcd watch until the ring takes over."""
        if not self.covers(rv):
            log.info("watch %s from %d predates the cache (from %d): reading etcd history",
                     self.info.plural, rv, self.covered_from)
            last = rv
            async with contextlib.aclosing(self.storage.watch(self.prefix, rv + 1)) as history:
                async for resp in history:
                    for e in resp.events:
                        ev = Event.from_etcd(self.info, e)
                        last = ev.revision
                        yield ev
                    if self.covers(last):
                        break
            rv = last
        async for ev in self.follow(rv, bookmark_interval, trigger):
            yield ev


class WatchCache:
    """All kinds' caches; `run()` follows them in the caller's TaskGroup."""

    def __init__(self, storage: st.Storage, size: int = 10_000, progress_interval: float = PROGRESS_INTERVAL):
        self.caches = {info.kind: KindCache(info, storage, size, progress_interval) for info in kinds.KINDS}

    def __getitem__(self, kind: str) -> KindCache:
        return self.caches[kind]

    def current(self, kind: str, key: bytes) -> st.KeyValue | None:
        """The newest value of `key` this cache has seen, as etcd's KeyValue (key, value,
        mod_revision), or None: not seen since the cache (re)started, deleted, or the kind's
        etcd watch not established.  It may be behind etcd; a txn comparing its revision says so."""
        c = self.caches.get(kind)
        if c is None or not c.ready.is_set():
            return None
        hit = c.latest.get(key)
        return None if hit is None else st.KeyValue(key=key, value=hit[0], mod_revision=hit[1])
