"""The token authenticators read the watch cache's indexes, not etcd
(apiserver/auth/tokencache.py): a revoked token (its ServiceAccount or
bootstrap Secret gone from the index) is refused at once, a token whose
objects the index does not show yet is checked against the Store before a
refusal, and verified JWT claims are reused for a bounded time."""
from __future__ import annotations

import asyncio
import time

import pytest

from apiserver.auth.bootstraptoken import BootstrapTokenAuthenticator
from apiserver.auth.index import ObjectIndex
from apiserver.auth.tokencache import VerifiedCache, WatchedObjects
from apiserver.serviceaccount import authn
from machinery import errors
from tests.unit.test_bootstrap_tokens import NOW, TOKEN, secret
from tests.unit.test_serviceaccount import Clock, issuer_with, key_set, sa  # noqa: F401 - key_set is a fixture


def run(coro):
    return asyncio.run(coro)


class Store:
    """The etcd side: a dict, counting reads."""

    def __init__(self, *objs):
        self.objs = {(type(o).__name__, o.metadata.namespace, o.metadata.name): o for o in objs}
        self.reads = 0

    async def __call__(self, kind, namespace, name):
        self.reads += 1
        return self.objs.get((kind, namespace, name))


def indexes(*objs) -> dict[str, ObjectIndex]:
    out = {k: ObjectIndex(k) for k in ("ServiceAccount", "Secret", "Pod")}
    for k in out.values():
        k.reset([])
    for o in objs:
        out[type(o).__name__].put(o)
    return out


def test_watched_objects_read_the_index_once_synced():
    store = Store(sa("robot", "ns1"))
    unsynced = WatchedObjects({"ServiceAccount": ObjectIndex("ServiceAccount")}, store)
    assert run(unsynced("ServiceAccount", "ns1", "robot")).metadata.name == "robot" and store.reads == 1
    synced = WatchedObjects(indexes(sa("robot", "ns1")), store)
    assert run(synced("ServiceAccount", "ns1", "robot")).metadata.name == "robot"
    assert run(synced("ServiceAccount", "ns1", "other")) is None and store.reads == 1     # no etcd read


def test_service_account_token_revoked_when_the_index_loses_the_account(key_set):  # noqa: F811
    iss = issuer_with(key_set, Clock(time.time()))
    account = sa("robot", "ns1", uid="u1")
    idx, store = indexes(account), Store(account)
    a = authn.ServiceAccountTokens(iss, WatchedObjects(idx, store), recheck=store)
    token, _ = iss.issue("ns1", "robot", "u1", [], 3600)
    for _ in range(3):
        assert run(a.token(token)).name == "system:serviceaccount:ns1:robot"
    assert store.reads == 0                               # every request answered from the index
    idx["ServiceAccount"].remove("ns1", "robot")          # the watch delivered the deletion
    store.objs.clear()
    with pytest.raises(errors.Unauthorized):
        run(a.token(token))
    assert store.reads == 1                               # checked once against etcd before the 401


def test_a_new_account_not_yet_in_the_index_is_checked_against_the_store(key_set):  # noqa: F811
    iss = issuer_with(key_set, Clock(time.time()))
    store = Store(sa("fresh", "ns1", uid="u2"))
    a = authn.ServiceAccountTokens(iss, WatchedObjects(indexes(), store), recheck=store)
    token, _ = iss.issue("ns1", "fresh", "u2", [], 3600)
    assert run(a.token(token)).name == "system:serviceaccount:ns1:fresh" and store.reads == 1


def test_bootstrap_token_revoked_when_its_secret_leaves_the_index():
    s = secret()
    idx, store = indexes(s), Store(s)
    a = BootstrapTokenAuthenticator(WatchedObjects(idx, store), clock=lambda: NOW, recheck=store)
    assert run(a.token(TOKEN)).name == "system:bootstrap:abcdef" and store.reads == 0
    idx["Secret"].remove(s.metadata.namespace, s.metadata.name)
    store.objs.clear()
    with pytest.raises(errors.Unauthorized):
        run(a.token(TOKEN))
    assert store.reads == 1


def test_verified_claims_are_reused_within_ttl_and_never_past_exp(key_set):  # noqa: F811
    clock = Clock(time.time())
    iss = issuer_with(key_set, clock)
    account = sa("robot", "ns1", uid="u1")
    a = authn.ServiceAccountTokens(iss, WatchedObjects(indexes(account), Store()))
    calls = []
    verify = iss.verify
    iss.verify = lambda t: calls.append(t) or verify(t)
    token, _ = iss.issue("ns1", "robot", "u1", [], 600)
    run(a.token(token))
    run(a.token(token))
    assert len(calls) == 1
    clock.now += 11                                       # past the cache's 10 s
    run(a.token(token))
    assert len(calls) == 2
    clock.now += 600                                      # past exp: verified again, and refused
    with pytest.raises(errors.Unauthorized):
        run(a.token(token))


def test_verified_cache_bounds():
    now = [100.0]
    c = VerifiedCache(ttl=10, size=2, clock=lambda: now[0])
    c.put("a", 1)
    c.put("b", 2, not_after=103)
    c.put("c", 3)
    assert c.get("a") is None and c.get("b") == 2 and c.get("c") == 3     # LRU: "a" evicted
    now[0] = 104
    assert c.get("b") is None and c.get("c") == 3
    off = VerifiedCache(ttl=0)
    off.put("a", 1)
    assert off.get("a") is None


def test_admitted_writes_are_read_from_the_store_until_the_index_has_them():
    now = [0.0]
    account = sa("robot", "ns1")
    idx, store = indexes(account), Store()                # etcd: already deleted
    objects = WatchedObjects(idx, store, clock=lambda: now[0], fence=10)
    objects.expect("ServiceAccount", "ns1", "robot")      # this apiserver admitted the delete
    assert run(objects("ServiceAccount", "ns1", "robot")) is None and store.reads == 1
    idx["ServiceAccount"].remove("ns1", "robot")          # the watch delivered it
    assert run(objects("ServiceAccount", "ns1", "robot")) is None and store.reads == 1
    assert objects.pending == {}
    objects.expect("ServiceAccount", "ns1", "never-indexed")
    now[0] = 11                                           # past the fence: the index again
    assert run(objects("ServiceAccount", "ns1", "never-indexed")) is None and store.reads == 1


def test_admission_marks_updates_and_deletes_of_token_objects():
    from apiserver import admission
    from machinery import kinds

    class FakeStore:
        token_objects = WatchedObjects(indexes(sa("robot", "ns1")), Store())
    marks = FakeStore.token_objects.pending
    run(admission.validate(admission.Request(admission.DELETE, kinds.BY_KIND["ServiceAccount"], None,
                                             sa("robot", "ns1"), store=FakeStore())))
    run(admission.validate(admission.Request(admission.DELETE, kinds.BY_KIND["ServiceAccount"], None,
                                             sa("dry", "ns1"), store=FakeStore(), dry_run=True)))
    assert list(marks) == [("ServiceAccount", "ns1", "robot")]
