"""In-memory copies of the few kinds the authorizers read on every request
(RBAC roles and bindings; pods, claims and volumes for the Node
authorizer), fed by the apiserver's watch cache: no etcd read per request.

An `ObjectIndex` attaches to one KindCache's hooks (`on_reset` with the full
list, `on_events` with each batch; an existing hook is chained, not
replaced). Both run in the event loop's thread without awaiting, so a
reader never sees half a batch. `listeners` are called after each change
with the (namespace, name) keys that changed (None after a reset), for
derived state (the node graph, ClusterRole aggregation). Until the first
list arrives `ready` is False; the authorizers then wait for it (at most
SYNC_WAIT seconds, `wait_synced`), as Kubernetes' apiserver waits for its
RBAC informers before it serves, so that a component connecting right
after an apiserver start is not refused for want of the roles.

Unit tests fill an index with `put`/`remove` directly.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterator

from google.protobuf.message import DecodeError

from apiserver import objects
from machinery import kinds

log = logging.getLogger(__name__)

Key = tuple[str, str]


class ObjectIndex:
    def __init__(self, kind: str):
        self.info = kinds.BY_KIND[kind]
        self.objects: dict[Key, object] = {}
        self.by_namespace: dict[str, dict[str, object]] = {}
        self.ready = False
        self._synced: asyncio.Event | None = None
        self.listeners: list[Callable[[set[Key] | None], None]] = []

    # ------------------------------------------------------------- feeding
    def attach(self, kind_cache) -> "ObjectIndex":
        """Follow a watchcache.KindCache (chaining hooks already set)."""
        prev_reset, prev_events = kind_cache.on_reset, kind_cache.on_events

        def on_reset(kvs):
            if prev_reset is not None:
                prev_reset(kvs)
            self.reset(kv.value for kv in kvs)

        def on_events(events):
            if prev_events is not None:
                prev_events(events)
            self.apply(events)

        kind_cache.on_reset, kind_cache.on_events = on_reset, on_events
        self._synced = asyncio.Event()
        return self

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until the first list arrived (an attached index; others are as they are)."""
        if self.ready or self._synced is None:
            return self.ready or self._synced is None
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _parse(self, raw: bytes):
        try:
            return self.info.message.FromString(raw)
        except DecodeError:
            log.warning("%s index: undecodable object skipped", self.info.plural)
            return None

    def reset(self, raws) -> None:
        self.objects.clear()
        self.by_namespace.clear()
        for raw in raws:
            obj = self._parse(raw)
            if obj is not None:
                self._store(obj)
        self.ready = True
        if self._synced is not None:
            self._synced.set()
        self._changed(None)

    def apply(self, events) -> None:
        changed: set[Key] = set()
        for ev in events:
            if ev.type == "DELETED" or not ev.raw:
                key = objects.name_of_key(self.info, ev.key)
                self._drop(key)
            else:
                try:
                    obj = ev.obj()               # parsed once, shared with the watch cache's readers
                except DecodeError:
                    log.warning("%s index: undecodable object skipped", self.info.plural)
                    continue
                key = self._store(obj)
            changed.add(key)
        if changed:
            self._changed(changed)

    def put(self, obj) -> None:
        """Add or replace one object (unit tests, and writes this process made)."""
        self._changed({self._store(obj)})
        self.ready = True

    def remove(self, namespace: str, name: str) -> None:
        self._drop((namespace, name))
        self._changed({(namespace, name)})

    def _store(self, obj) -> Key:
        key = (obj.metadata.namespace if self.info.namespaced else "", obj.metadata.name)
        self.objects[key] = obj
        self.by_namespace.setdefault(key[0], {})[key[1]] = obj
        return key

    def _drop(self, key: Key) -> None:
        if self.objects.pop(key, None) is not None:
            names = self.by_namespace.get(key[0], {})
            names.pop(key[1], None)
            if not names:
                self.by_namespace.pop(key[0], None)

    def _changed(self, keys: set[Key] | None) -> None:
        for fn in self.listeners:
            fn(keys)

    # ------------------------------------------------------------- reading
    def get(self, namespace: str, name: str):
        return self.objects.get((namespace, name))

    def in_namespace(self, namespace: str) -> Iterator:
        return iter(list(self.by_namespace.get(namespace, {}).values()))

    def all(self) -> Iterator:
        return iter(list(self.objects.values()))
