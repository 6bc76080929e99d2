"""Informers: a local, indexed cache of one kind kept current by list + watch.

Shaped after client-go's tools/cache (Reflector + Indexer + shared informer),
on asyncio:

* The reflector lists, then watches from the list's resourceVersion. When a
  stream ends or fails it watches again from the last resourceVersion seen
  (events and BOOKMARKs advance it). On errors.Expired ("too old") it lists
  again and diffs the list against the cache: new objects are ADDs, objects
  whose resourceVersion changed are UPDATEs, and objects that vanished while
  we were away are DELETEs carrying the last object we knew (client-go's
  DeletedFinalStateUnknown, simply unwrapped). Unchanged objects emit
  nothing. Other errors (Unavailable, ...) back off exponentially
  (0.2 s doubling to 30 s, reset once a watch delivers events), so a dead
  apiserver is never busy-looped; a watch that ends at once without events
  counts as an error, one the server closes after a while does not.
  Given several apiservers, the client itself resumes a broken watch on
  another one from the last resourceVersion (machinery/endpoints.py): the
  informer sees an error only when every apiserver failed in a row.
* The cache is written by the reflector synchronously (no await between
  reading an event and updating the store and indexes), so every read from
  any task sees a consistent store. Objects in the cache are shared: treat
  them as read-only (codec.copy before changing one).
* Handlers are called by a separate dispatcher task, in event order, one
  notification at a time, after the cache already reflects the change (the
  cache may be ahead of the notifications, as in client-go). Handlers may be
  plain callables or coroutine functions; they should only enqueue keys.
  A handler that raises is logged and does not stop the informer. A handler
  added after the informer synced first receives an ADD for every cached
  object.
* `has_synced()` is true once the first list is in the cache AND its ADD
  notifications have been delivered to the handlers registered at the time.
* `resync` (seconds) periodically delivers on_update(obj, obj) for every
  cached object, as client-go's resync does.
* Unit tests may feed an informer directly: `apply(event)` is the
  reflector's own step (one WatchEvent into the cache, its notification
  queued), e.g. a DELETED event for an object the apiserver still has, to
  make the cache miss it; `notifications_pending()` says whether handlers
  still have notifications to receive.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections import defaultdict
from typing import Callable

from google.protobuf.message import Message

from machinery import errors, kinds

log = logging.getLogger("kctl.informer")

IndexFunc = Callable[[Message], list[str]]


# ------------------------------------------------------------ keys and indexes

def key_of(obj: Message) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    md = obj.metadata
    return f"{md.namespace}/{md.name}" if md.namespace else md.name


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key; namespace is "" for cluster-scoped objects."""
    ns, _, name = key.rpartition("/")
    return ns, name


def index_by_namespace(obj: Message) -> list[str]:
    return [obj.metadata.namespace]


def index_by_node(obj: Message) -> list[str]:
    """Pods by spec.nodeName (unscheduled pods index under "")."""
    return [obj.spec.node_name]


def index_by_owner_uid(obj: Message) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references]


def index_by_controller_uid(obj: Message) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references if ref.controller]


BY_NAMESPACE, BY_NODE, BY_OWNER, BY_CONTROLLER = "namespace", "node", "owner", "controller"


async def _call(fn, *args) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("informer handler %r failed", fn)


class _Handler:
    def __init__(self, on_add, on_update, on_delete):
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete


class Informer:
    """List + watch one kind into an indexed cache and notify handlers (see module doc)."""

    def __init__(self, client, kind, namespace: str = "", label_selector: str = "",
                 field_selector: str = "", resync: float | None = None, *,
                 backoff_initial: float = 0.2, backoff_max: float = 30.0):
        self.client = client
        self.kind = kinds.lookup(kind)
        self.namespace = namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.resync = resync
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.last_resource_version = ""
        self._items: dict[str, Message] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._handlers: tuple[_Handler, ...] = ()
        self._notes: asyncio.Queue = asyncio.Queue()
        self._synced = asyncio.Event()
        self._listed = False
        self._running = False
        self.relists = 0          # lists after the first (Expired); for tests and metrics

    def __repr__(self) -> str:
        sel = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        return f"Informer({self.kind.kind} ns={self.namespace or '*'}{' ' + sel if sel else ''})"

    # ------------------------------------------------------------ registration

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Register an index before run(); fn(obj) returns the object's index values."""
        if self._listed:
            raise RuntimeError(f"{self!r}: add_index({name!r}) after the informer started")
        self._indexers[name] = fn
        self._indexes[name] = defaultdict(set)

    def add_handler(self, on_add=None, on_update=None, on_delete=None) -> None:
        """Register handlers: on_add(obj), on_update(old, new), on_delete(obj)."""
        h = _Handler(on_add, on_update, on_delete)
        self._handlers = self._handlers + (h,)
        if self._listed and h.on_add:
            # Replay the current cache to the newcomer, ordered before later events.
            for obj in list(self._items.values()):
                self._notes.put_nowait(("add", (h,), (obj,)))

    # ------------------------------------------------------------ cache reads

    def get(self, namespace: str, name: str) -> Message | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> Message | None:
        return self._items.get(key)

    def list(self, namespace: str | None = None) -> list[Message]:
        if namespace is None:
            return list(self._items.values())
        if BY_NAMESPACE in self._indexes:
            return self.by_index(BY_NAMESPACE, namespace)
        return [o for o in self._items.values() if o.metadata.namespace == namespace]

    def keys(self) -> list[str]:
        return list(self._items)

    def by_index(self, index_name: str, value: str) -> list[Message]:
        keys = self._indexes[index_name].get(value, ())
        return [self._items[k] for k in keys]

    def index_keys(self, index_name: str, value: str) -> list[str]:
        return list(self._indexes[index_name].get(value, ()))

    def __len__(self) -> int:
        return len(self._items)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def notifications_pending(self) -> int:
        """Notifications queued for the handlers and not yet taken by the dispatcher."""
        return self._notes.qsize()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # ------------------------------------------------------------ store writes (synchronous)

    def _index(self, key: str, obj: Message, add: bool) -> None:
        for name, fn in self._indexers.items():
            idx = self._indexes[name]
            for value in fn(obj):
                if add:
                    idx[value].add(key)
                else:
                    keys = idx.get(value)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del idx[value]

    def _set(self, obj: Message) -> Message | None:
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._index(key, old, add=False)
        self._items[key] = obj
        self._index(key, obj, add=True)
        return old

    def _pop(self, key: str) -> Message | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._index(key, old, add=False)
        return old

    def _notify(self, what: str, *args) -> None:
        if self._handlers:
            self._notes.put_nowait((what, self._handlers, args))

    def apply(self, ev) -> None:
        """Apply one watch event to the cache and queue its notification (what
        the reflector does for each event; public so unit tests can feed an
        informer). BOOKMARKs only advance last_resource_version."""
        if ev.resource_version:
            self.last_resource_version = ev.resource_version
        if ev.type == "BOOKMARK" or ev.object is None:
            return
        obj = ev.object
        if not ev.resource_version:
            self.last_resource_version = obj.metadata.resource_version
        if ev.type in ("ADDED", "MODIFIED"):
            old = self._set(obj)
            if old is None:
                self._notify("add", obj)
            else:
                self._notify("update", old, obj)
        elif ev.type == "DELETED":
            old = self._pop(key_of(obj))
            if old is not None:
                self._notify("delete", obj)
        else:
            log.warning("%r: unknown watch event type %r", self, ev.type)

    def _replace(self, items: list[Message], rv: str) -> None:
        """Make the cache equal to a fresh list and notify the differences."""
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self._items if k not in fresh]:
            self._notify("delete", self._pop(key))
        for key, obj in fresh.items():
            old = self._items.get(key)
            if old is None:
                self._set(obj)
                self._notify("add", obj)
            elif old.metadata.resource_version != obj.metadata.resource_version:
                self._set(obj)
                self._notify("update", old, obj)
        self.last_resource_version = rv
        if not self._listed:
            self._listed = True
            self._notes.put_nowait(("synced", (), ()))

    # ------------------------------------------------------------ tasks

    async def run(self) -> None:
        """Reflect and dispatch until cancelled; put it in the component's TaskGroup."""
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._dispatch(), name=f"{self!r} dispatch")
                tg.create_task(self._reflect(), name=f"{self!r} reflect")
                if self.resync:
                    tg.create_task(self._resync_loop(), name=f"{self!r} resync")
        finally:
            self._running = False

    async def _dispatch(self) -> None:
        while True:
            what, handlers, args = await self._notes.get()
            if what == "synced":
                self._synced.set()
                continue
            for h in handlers:
                fn = {"add": h.on_add, "update": h.on_update, "delete": h.on_delete}[what]
                if fn is not None:
                    await _call(fn, *args)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for obj in list(self._items.values()):
                self._notify("update", obj, obj)

    async def _reflect(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff_initial
        need_list = True
        while True:
            events, listed = 0, False
            try:
                if need_list:
                    items, rv = await self.client.list(
                        self.kind, self.namespace, label_selector=self.label_selector,
                        field_selector=self.field_selector)
                    if self._listed:
                        self.relists += 1
                    self._replace(items, rv)
                    need_list, listed = False, True
                    log.debug("%r: listed %d objects at rv %s", self, len(items), rv)
                started = loop.time()
                stream = self.client.watch(
                    self.kind, self.namespace, resource_version=self.last_resource_version,
                    label_selector=self.label_selector, field_selector=self.field_selector,
                    allow_bookmarks=True)
                async with contextlib.aclosing(stream):
                    async for ev in stream:
                        self.apply(ev)
                        events += 1
                        delay = self.backoff_initial
                if events or loop.time() - started > 5:
                    continue          # a stream that ended normally: watch again at once
                log.debug("%r: watch ended at once without events", self)
            except asyncio.CancelledError:
                raise
            except errors.Expired as exc:
                log.info("%r: resourceVersion %s too old (%s); relisting", self,
                         self.last_resource_version, exc)
                need_list = True
                if events or not listed:
                    continue          # relist at once, unless the list itself was just too old
            except errors.ApiError as exc:
                log.warning("%r: %s: %s; retrying in %.1fs", self, type(exc).__name__, exc, delay)
            except Exception:
                log.exception("%r: unexpected error; retrying in %.1fs", self, delay)
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.backoff_max)


class SharedInformerFactory:
    """One informer per (kind, namespace, selectors), shared by every user.

    Ask for informers (and register indexes) first, then run(); informers
    asked for while the factory runs are started at once.
    """

    def __init__(self, client, resync: float | None = None):
        self.client = client
        self.resync = resync
        self._informers: dict[tuple, Informer] = {}
        self._tg: asyncio.TaskGroup | None = None

    def informer(self, kind, namespace: str = "", label_selector: str = "",
                 field_selector: str = "") -> Informer:
        info = kinds.lookup(kind)
        key = (info.kind, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, info, namespace, label_selector, field_selector, self.resync)
            self._informers[key] = inf
            if self._tg is not None:
                self._tg.create_task(inf.run(), name=repr(inf))
        return inf

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                for inf in list(self._informers.values()):
                    tg.create_task(inf.run(), name=repr(inf))
                await asyncio.Event().wait()
            finally:
                self._tg = None

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in list(self._informers.values())))

    def has_synced(self) -> bool:
        return all(inf.has_synced() for inf in self._informers.values())
