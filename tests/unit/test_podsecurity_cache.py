"""PodSecurity over the watch cache (apiserver/admission_cache.FencedIndex as
`store.namespaces`): namespace labels come from the index once it has
synced, from etcd before it and for a namespace it does not have; a
namespace this apiserver relabelled is read from etcd until the index shows
the new labels (read-your-writes), or until the fence expires."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from apiserver import admission
from apiserver.admission_cache import FencedIndex
from apiserver.auth.index import ObjectIndex
from apiserver.podsecurity import PodSecurity
from apiserver.podsecurity.admission import namespace_view
from machinery import codec, errors, kinds
from tests.unit.test_podsecurity import ENFORCE, c, ns, pod
from tests.unit.test_priority_cache import Clock, CountingStorage

NS = kinds.BY_KIND["Namespace"]


def setup(stored=(), indexed=(), ready=True):
    index = ObjectIndex("Namespace")
    for n in indexed:
        index.put(n)
    index.ready = ready
    clock = Clock()
    store = SimpleNamespace(storage=CountingStorage(*stored), namespaces=FencedIndex(index, namespace_view, clock))
    return store, index, clock


def admit(store, obj, op=admission.CREATE, old=None, dry_run=False):
    return asyncio.run(PodSecurity().validate(admission.Request(op, kinds.of(obj), obj, old, "", store, dry_run)))


ROOT = pod(namespace="apps", containers=[c(privileged=True)])


def test_a_synced_index_answers_without_etcd():
    # etcd says privileged, the index restricted: the index is what is read
    store, _, _ = setup(stored=[ns("apps", **{ENFORCE: "privileged"})], indexed=[ns("apps", **{ENFORCE: "restricted"})])
    with pytest.raises(errors.Forbidden, match='violates PodSecurity "restricted:latest"'):
        admit(store, ROOT)
    assert store.storage.reads == 0


def test_etcd_before_the_first_list_and_for_a_namespace_the_index_lacks():
    store, _, _ = setup(stored=[ns("apps", **{ENFORCE: "privileged"})], ready=False)
    assert admit(store, ROOT) == []
    assert store.storage.reads == 1
    store, _, _ = setup(stored=[ns("apps", **{ENFORCE: "privileged"})])   # synced, created elsewhere
    assert admit(store, ROOT) == []
    assert store.storage.reads == 1


def test_a_relabelled_namespace_is_read_your_writes():
    old = ns("apps", **{ENFORCE: "privileged"})
    new = codec.copy(old)
    new.metadata.labels[ENFORCE] = "baseline"
    store, index, _ = setup(stored=[new], indexed=[old])
    admit(store, new, admission.UPDATE, old)             # admitted; its watch event has not arrived
    reads = store.storage.reads                          # (a stricter enforce level lists the pods)
    with pytest.raises(errors.Forbidden, match='violates PodSecurity "baseline:latest"'):
        admit(store, ROOT)
    assert store.storage.reads == reads + 1
    index.put(new)                                       # the event arrived: back to the cache
    with pytest.raises(errors.Forbidden):
        admit(store, ROOT)
    assert store.storage.reads == reads + 1 and store.namespaces.pending == {}


def test_other_labels_dry_runs_and_refused_writes_leave_the_cache_in_use():
    old = ns("apps", **{ENFORCE: "privileged"})
    store, index, _ = setup(stored=[old], indexed=[old])
    relabelled = codec.copy(old)
    relabelled.metadata.labels["team"] = "a"             # same pod-security labels: same view
    admit(store, relabelled, admission.UPDATE, old)
    dry = codec.copy(old)
    dry.metadata.labels[ENFORCE] = "restricted"
    admit(store, dry, admission.UPDATE, old, dry_run=True)
    bad = codec.copy(old)
    bad.metadata.labels[ENFORCE] = "strict"              # invalid: refused, so not noted
    with pytest.raises(errors.Invalid):
        admit(store, bad, admission.UPDATE, old)
    reads = store.storage.reads                          # (a stricter enforce level lists the pods)
    assert admit(store, ROOT) == [] and store.storage.reads == reads


def test_a_write_that_never_lands_stops_mattering_after_the_fence():
    apps = ns("apps", **{ENFORCE: "privileged"})
    store, _, clock = setup(stored=[apps], indexed=[apps])
    admit(store, ns("apps2", **{ENFORCE: "restricted"}))   # refused later (e.g. AlreadyExists)
    assert admit(store, ROOT) == [] and store.storage.reads == 1
    clock.now += 10
    assert admit(store, ROOT) == [] and store.storage.reads == 1 and store.namespaces.pending == {}


def test_follow_chains_the_hooks_already_on_the_kind_cache():
    seen = []

    class FakeKindCache:
        on_reset = staticmethod(lambda kvs: seen.append(len(kvs)))
        on_events = None

    async def main():
        kc = FakeKindCache()
        cache = FencedIndex.follow({"Namespace": kc}, "Namespace", namespace_view)
        assert not cache.current()
        kc.on_reset([SimpleNamespace(value=ns("apps", **{ENFORCE: "privileged"}).SerializeToString())])
        assert cache.current() and seen == [1]
        assert namespace_view(cache.index.get("", "apps")) == ((ENFORCE, "privileged"),)

    asyncio.run(main())
