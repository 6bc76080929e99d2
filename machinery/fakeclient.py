"""An in-memory stand-in for machinery.client.Client, for UNIT tests only.

Controllers and the scheduler take their client by injection (design §6.6);
their unit tests hand them a FakeClient. Integration tests use the real
apiserver: this fake never replaces the real path.

What it models, the way the apiserver does:
* one global resourceVersion counter (etcd's revision): every write bumps it,
  lists return it, objects carry the revision of their last write;
* create (AlreadyExists, generateName, uid, creationTimestamp, generation 1),
  update (NotFound, Conflict on a stale resourceVersion, generation bumped on
  spec change, status kept: only update_status writes status for kinds with
  a status subresource), delete (preconditions; graceful deletion of pods
  bound to a node by the apiserver's rule, machinery/deletion.py —
  deletionTimestamp + grace, removed by a delete with grace_period=0 —;
  objects with finalizers only get a deletionTimestamp and go when the
  last finalizer is removed), bind / bind_batch for pods;
* NOT modelled: garbage collection / propagation policies, namespace
  finalization, defaulting and validation (create keeps the status it is
  given, which is handy for seeding tests);
* label and field selectors (machinery/selectors.py; BadRequest when invalid);
* watches from a resourceVersion, replayed from an in-memory history, with
  ADDED/DELETED when an object enters/leaves a selector (machinery/fakewatch.py);
* `expire_watches()` (open watches raise errors.Expired and older versions
  cannot be watched any more), `end_watches()` (streams end cleanly),
  `hold_watches(kind)` / `release_watches(kind)` (a slow watch stream:
  informer caches lag behind the store), and `fail_next(method, exc)` /
  `pending_failures(method)` / `clear_failures()` to inject errors.

The test hooks live in machinery/fakehooks.py (a mixin of FakeClient), apart
from the API methods here. Hooks to read and write the store directly,
without the API's rules and without recording an action: `seed(*objs)` stores objects as given
(a fresh resourceVersion, ADDED to watchers), `stored(kind, name, ns)` is
the stored object or None, `objects(kind)` every stored object of a kind.

Concurrency: everything runs on the event loop and no method awaits between
reading and writing state, so each call is atomic. Watches are
machinery/fakewatch.py's WatchHub: a watch registers its queue and replays
history in one synchronous step, so it never misses or doubles an event.
`actions` records (verb, kind, namespace, name) for assertions.
"""
from __future__ import annotations

import itertools
import time
import uuid
from collections import defaultdict

from google.protobuf.message import Message

from machinery import codec, deletion, errors, kinds
from machinery.fakehooks import FakeClientHooks
from machinery.fakewatch import Watcher, WatchHub, field_matcher, label_matcher


class FakeClient(FakeClientHooks):
    """Same async interface as machinery.client.Client, backed by dicts;
    the test hooks (seed, stored, fail_next, hold_watches, ...) come from
    machinery/fakehooks.py's FakeClientHooks."""

    def __init__(self, *, clock=time.time):
        self.clock = clock
        self.target = "fake"
        self.warnings: list[str] = []
        self._rv = itertools.count(1)
        self.resource_version = 0
        self._objects: dict[str, dict[tuple[str, str], Message]] = defaultdict(dict)
        self._watches = WatchHub()
        self._failures: dict[str, list[Exception]] = defaultdict(list)
        self.actions: list[tuple[str, str, str, str]] = []

    # ------------------------------------------------------------ internals

    def _now(self):
        from google.protobuf.timestamp_pb2 import Timestamp
        ts = Timestamp()
        ts.FromNanoseconds(int(self.clock() * 1e9) // 1000 * 1000)
        return ts

    def _next_rv(self) -> int:
        self.resource_version = next(self._rv)
        return self.resource_version

    def _record(self, info, type_, obj, old) -> None:
        self._watches.record(self.resource_version, info.kind, type_, obj, old)

    def _key(self, info, namespace, name):
        return (namespace if info.namespaced else "", name)

    def _stored(self, info, namespace, name) -> Message:
        obj = self._objects[info.kind].get(self._key(info, namespace, name))
        if obj is None:
            raise errors.NotFound(f'{info.resource} "{name}" not found', kind=info.plural, name=name)
        return obj

    def _stored_or_none(self, info, namespace, name):
        return self._objects[info.kind].get(self._key(info, namespace, name))

    @staticmethod
    def _grace_period(obj, requested: int | None) -> int:
        """The apiserver's rule (machinery/deletion.py): only pods wait."""
        return deletion.pod_grace_period(obj, requested) if kinds.of(obj).kind == "Pod" else 0

    # ------------------------------------------------------------ CRUD

    async def create(self, obj: Message, *, dry_run: bool = False, field_manager: str = "") -> Message:
        self._check("create")
        info = kinds.of(obj)
        new = codec.copy(obj)
        md = new.metadata
        if info.namespaced and not md.namespace:
            md.namespace = "default"
        if not md.name and md.generate_name:
            md.name = md.generate_name + uuid.uuid4().hex[:5]
        if not md.name:
            raise errors.Invalid.of(info.kind, "", [errors.required("metadata.name")], kind=info.kind)
        key = self._key(info, md.namespace, md.name)
        self.actions.append(("create", info.kind, key[0], md.name))
        if key in self._objects[info.kind]:
            raise errors.AlreadyExists(f'{info.resource} "{md.name}" already exists',
                                       kind=info.plural, name=md.name)
        new.api_version, new.kind = info.api_version, info.kind
        md.uid = str(uuid.uuid4())
        md.creation_timestamp.CopyFrom(self._now())
        md.generation = 1
        if info.kind == "Pod" and not new.status.phase:
            new.status.phase = "Pending"          # as the apiserver does
        if dry_run:
            return new
        md.resource_version = str(self._next_rv())
        self._objects[info.kind][key] = new
        self._record(info, "ADDED", new, None)
        return codec.copy(new)

    async def get(self, kind, name: str, namespace: str = "") -> Message:
        self._check("get")
        info = kinds.lookup(kind)
        self.actions.append(("get", info.kind, namespace, name))
        return codec.copy(self._stored(info, namespace or "default", name))

    async def list(self, kind, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "", timeout: float | None = None) -> tuple[list[Message], str]:
        self._check("list")
        info = kinds.lookup(kind)
        self.actions.append(("list", info.kind, namespace, ""))
        labels, fields = label_matcher(label_selector), field_matcher(field_selector, info.kind)
        items = [codec.copy(o) for (ns, _), o in sorted(self._objects[info.kind].items())
                 if (not namespace or not info.namespaced or ns == namespace)
                 and labels(o.metadata.labels) and fields(o)]
        return items, str(self.resource_version)

    def _write(self, info, old: Message, new: Message, *, deleting: bool = False) -> Message:
        """Store new over old (metadata the server owns is kept) and record the change."""
        new.api_version, new.kind = info.api_version, info.kind
        om, nm = old.metadata, new.metadata
        nm.uid = om.uid
        nm.creation_timestamp.CopyFrom(om.creation_timestamp)
        if not deleting:              # clients cannot set or change the deletion fields
            nm.ClearField("deletion_timestamp")
            nm.ClearField("deletion_grace_period_seconds")
            if om.HasField("deletion_timestamp"):
                nm.deletion_timestamp.CopyFrom(om.deletion_timestamp)
            if om.HasField("deletion_grace_period_seconds"):
                nm.deletion_grace_period_seconds = om.deletion_grace_period_seconds
        nm.generation = om.generation
        if hasattr(new, "spec") and new.spec != old.spec:
            nm.generation += 1
        if nm.HasField("deletion_timestamp") and not om.HasField("deletion_timestamp"):
            nm.generation += 1
        if old == new:
            return codec.copy(old)    # no-op update: no new revision, like the apiserver
        new.metadata.resource_version = str(self._next_rv())
        md = new.metadata
        if md.HasField("deletion_timestamp") and not md.finalizers and (
                not md.HasField("deletion_grace_period_seconds") or md.deletion_grace_period_seconds == 0):
            del self._objects[info.kind][self._key(info, new.metadata.namespace, new.metadata.name)]
            self._record(info, "DELETED", new, old)
            return codec.copy(new)
        self._objects[info.kind][self._key(info, new.metadata.namespace, new.metadata.name)] = new
        self._record(info, "MODIFIED", new, old)
        return codec.copy(new)

    def _prepare_update(self, obj: Message, verb: str):
        self._check(verb)
        info = kinds.of(obj)
        ns = obj.metadata.namespace or ("default" if info.namespaced else "")
        self.actions.append((verb, info.kind, ns, obj.metadata.name))
        old = self._stored(info, ns, obj.metadata.name)
        rv = obj.metadata.resource_version
        if rv and rv != old.metadata.resource_version:
            raise errors.Conflict(
                f'Operation cannot be fulfilled on {info.resource} "{obj.metadata.name}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                kind=info.plural, name=obj.metadata.name)
        new = codec.copy(obj)
        new.metadata.namespace = ns
        return info, old, new

    async def update(self, obj: Message, *, dry_run: bool = False, field_manager: str = "") -> Message:
        info, old, new = self._prepare_update(obj, "update")
        if info.has_status and hasattr(new, "status"):
            new.status.CopyFrom(old.status)
        if dry_run:
            return new
        return self._write(info, old, new)

    async def update_status(self, obj: Message, *, subresource: str = "") -> Message:
        info, old, new = self._prepare_update(obj, "update_status")
        status = codec.copy(new.status)
        new = codec.copy(old)
        new.status.CopyFrom(status)
        new.metadata.resource_version = old.metadata.resource_version
        return self._write(info, old, new)

    async def delete(self, kind, name: str, namespace: str = "", *, grace_period: int | None = None,
                     propagation: str = "", uid: str = "", resource_version: str = "",
                     dry_run: bool = False) -> tuple[Message, bool]:
        """Like the apiserver: pods on a node get a grace period, objects with
        finalizers wait for them; no garbage collection of dependents."""
        self._check("delete")
        info = kinds.lookup(kind)
        ns = (namespace or "default") if info.namespaced else ""
        self.actions.append(("delete", info.kind, ns, name))
        old = self._stored(info, ns, name)
        if uid and uid != old.metadata.uid or resource_version and resource_version != old.metadata.resource_version:
            raise errors.Conflict(f'Precondition failed for {info.resource} "{name}"', kind=info.plural, name=name)
        if dry_run:
            return codec.copy(old), True
        grace = self._grace_period(old, grace_period)
        if old.metadata.finalizers or grace > 0:
            md = old.metadata
            new = codec.copy(old)
            if not md.HasField("deletion_timestamp"):
                new.metadata.deletion_timestamp.FromSeconds(int(self.clock()) + grace)
                new.metadata.deletion_grace_period_seconds = grace
            elif grace < md.deletion_grace_period_seconds:
                new.metadata.deletion_timestamp.FromSeconds(
                    min(int(self.clock()) + grace, md.deletion_timestamp.seconds))
                new.metadata.deletion_grace_period_seconds = grace
            written = self._write(info, old, new, deleting=True)
            if self._stored_or_none(info, ns, name) is None:
                return written, True
            return written, False
        del self._objects[info.kind][(ns, name)]
        gone = codec.copy(old)
        gone.metadata.resource_version = str(self._next_rv())
        self._record(info, "DELETED", gone, old)
        return codec.copy(gone), True

    # ------------------------------------------------------------ watch

    async def watch(self, kind, namespace: str = "", *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    allow_bookmarks: bool = False):
        self._check("watch")
        info = kinds.lookup(kind)
        w = self._watches.open(
            Watcher(info.kind, namespace if info.namespaced else "", label_matcher(label_selector),
                    field_matcher(field_selector, info.kind)),
            resource_version, self.resource_version, list(self._objects[info.kind].values()))
        try:
            while (ev := await self._watches.next(w)) is not None:
                yield ev
        finally:
            self._watches.close(w)

    # ------------------------------------------------------------ pods

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str = "",
                   annotations: dict[str, str] | None = None) -> Message:
        self._check("bind")
        info = kinds.BY_KIND["Pod"]
        self.actions.append(("bind", "Pod", namespace, name))
        old = self._stored(info, namespace or "default", name)
        if uid and uid != old.metadata.uid:
            raise errors.Conflict(f'Precondition failed: UID in precondition: {uid}, UID in object meta: '
                                  f'{old.metadata.uid}', kind="pods", name=name)
        if old.spec.node_name:
            raise errors.Conflict(f'pod {name} is already assigned to node "{old.spec.node_name}"',
                                  kind="pods", name=name)
        new = codec.copy(old)
        new.spec.node_name = node_name
        for k, v in (annotations or {}).items():
            new.metadata.annotations[k] = v
        return self._write(info, old, new)

    async def bind_batch(self, bindings) -> list[errors.ApiError | None]:
        results: list[errors.ApiError | None] = []
        for b in bindings:
            try:
                await self.bind(b.namespace, b.name, b.node_name, uid=b.uid, annotations=dict(b.annotations))
                results.append(None)
            except errors.ApiError as exc:
                results.append(exc)
        return results

    async def version(self):
        from machinery.pb import api_pb2
        return api_pb2.VersionResponse(git_version="fake", platform="fake", etcd_version="")

    async def close(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass
