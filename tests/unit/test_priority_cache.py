"""The Priority admission plugin over the watch cache
(apiserver/admission_priority.ClassCache): PriorityClasses come from the
index once it has synced, from etcd before; a write this apiserver admitted
sends reads to etcd until the index shows it (read-your-writes), or until
the fence expires."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from apiserver import admission, admission_priority as ap, registry
from apiserver.auth.index import ObjectIndex
from machinery import codec, errors, kinds
from scheduler import hollow
from tests.unit.fake_storage import FakeStorage
from tests.unit.test_scheduler_priority_admission import pc

INFO = kinds.BY_KIND["PriorityClass"]


class CountingStorage(FakeStorage):
    def __init__(self, *objs):
        super().__init__(*objs)
        self.reads = 0

    async def get(self, key):
        self.reads += 1
        return await super().get(key)

    async def range(self, prefix):
        self.reads += 1
        return await super().range(prefix)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def created(c):
    """A class as Store.create has it at admission (uid set)."""
    registry.strategy(INFO).prepare_for_create(c, "")
    return c


def setup(stored=(), indexed=(), ready=True):
    index = ObjectIndex("PriorityClass")
    for c in indexed:
        index.put(c)
    index.ready = ready
    clock = Clock()
    store = SimpleNamespace(storage=CountingStorage(*stored), priority_classes=ap.ClassCache(index, clock, fence=10))
    return store, index, clock


def pod(class_name=""):
    p = hollow.pod("a")
    p.spec.priority_class_name = class_name
    return p


def admit(store, obj):
    asyncio.run(ap.admit(store, obj))
    return obj


def write(store, op, obj, old=None, dry_run=False):
    """The validating phase of a PriorityClass write (what Store.create/update/delete run)."""
    asyncio.run(admission.Priority().validate(admission.Request(op, INFO, obj, old, "", store, dry_run)))


def test_a_synced_index_answers_without_etcd():
    high = created(pc("high", 1000, policy="Never"))
    store, _, _ = setup(stored=[high], indexed=[high])
    p = admit(store, pod("high"))
    assert (p.spec.priority, p.spec.preemption_policy) == (1000, "Never")
    admit(store, pod())
    assert store.storage.reads == 0


def test_the_cache_is_what_counts_once_synced():
    store, _, _ = setup(stored=[created(pc("etcd-only", 5))])
    with pytest.raises(errors.Forbidden, match="no PriorityClass with name etcd-only was found"):
        admit(store, pod("etcd-only"))


def test_before_the_first_list_etcd_is_read():
    store, _, _ = setup(stored=[created(pc("high", 1000))], ready=False)
    assert admit(store, pod("high")).spec.priority == 1000
    assert store.storage.reads == 1


def test_a_class_is_usable_as_soon_as_its_create_returned():
    high = created(pc("high", 1000, default=True))
    store, index, _ = setup(stored=[high])
    write(store, admission.CREATE, high)                 # admitted; its watch event has not arrived
    assert admit(store, pod("high")).spec.priority == 1000
    p = admit(store, pod())                              # the new global default, too
    assert (p.spec.priority_class_name, p.spec.priority) == ("high", 1000)
    assert store.storage.reads == 2
    index.put(high)                                      # the event arrived: back to the cache
    admit(store, pod("high"))
    assert store.storage.reads == 2 and store.priority_classes.pending == {}


def test_updates_and_deletes_are_read_your_writes_too():
    old = created(pc("dflt", 10))
    new = codec.copy(old)
    new.global_default = True
    store, index, _ = setup(stored=[new], indexed=[old])
    write(store, admission.UPDATE, new, old)
    assert admit(store, pod()).spec.priority_class_name == "dflt"
    index.put(new)
    assert admit(store, pod()).spec.priority_class_name == "dflt"
    reads = store.storage.reads
    store.storage.kvs.clear()                            # deleted in etcd, still in the index
    write(store, admission.DELETE, None, new)
    assert admit(store, pod()).spec.priority_class_name == ""
    assert store.storage.reads == reads + 1
    index.remove("", "dflt")
    admit(store, pod())
    assert store.storage.reads == reads + 1


def test_a_write_that_never_lands_stops_mattering_after_the_fence():
    store, _, clock = setup()
    write(store, admission.CREATE, created(pc("lost", 7)))   # refused later (e.g. AlreadyExists)
    admit(store, pod())
    assert store.storage.reads == 1
    clock.now += 10
    admit(store, pod())
    assert store.storage.reads == 1 and store.priority_classes.pending == {}


def test_dry_runs_and_other_kinds_are_not_noted():
    store, _, _ = setup()
    write(store, admission.CREATE, created(pc("dry", 7)), dry_run=True)
    asyncio.run(admission.Priority().validate(admission.Request(admission.CREATE, kinds.BY_KIND["Pod"], pod(),
                                                                store=store)))
    assert store.priority_classes.pending == {}


def test_attach_follows_the_kind_cache():
    class FakeKindCache:
        on_reset = on_events = None

    async def main():
        kc = FakeKindCache()
        cache = ap.ClassCache.attach({"PriorityClass": kc})
        assert not cache.current()
        high = created(pc("high", 1000))
        kc.on_reset([SimpleNamespace(value=high.SerializeToString())])
        assert cache.current() and cache.index.get("", "high").value == 1000

    asyncio.run(main())
