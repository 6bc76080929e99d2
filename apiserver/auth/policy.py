"""The default RBAC policy in etcd, and ClusterRole aggregation.

`reconcile(store)` runs at every start (after the system namespaces):
each default object (bootstrappolicy.py, joinpolicy.py) is created when missing; when it
exists and its `rbac.authorization.kubernetes.io/autoupdate` annotation is
not "false", what the default has and it lacks is added back (rules,
subjects, labels, annotations, aggregation selectors) — Kubernetes'
reconcile semantics: an administrator's additions survive, deletions of
default grants are undone unless autoupdate is switched off.

`Aggregator` is Kubernetes' clusterrole-aggregation controller, run inside
the apiserver (it only reads the ClusterRole index and writes ClusterRoles
as the loopback identity): a ClusterRole with an aggregationRule gets the
union of the rules of every other ClusterRole whose labels match one of its
selectors, in name order, without duplicates. It recomputes after every
ClusterRole change (coalesced) and on start.
"""
from __future__ import annotations

import asyncio
import logging

from apiserver import objects
from apiserver.auth import bootstrappolicy as bp, joinpolicy
from apiserver.auth.index import ObjectIndex
from machinery import codec, errors, kinds, selectors

log = logging.getLogger(__name__)


def _merge_rules(have, want) -> bool:
    changed = False
    for r in want:
        if r not in have:
            have.append(r)
            changed = True
    return changed


def _merge_map(have, want) -> bool:
    missing = {k: v for k, v in want.items() if k not in have}
    have.update(missing)
    return bool(missing)


def _merge(current, default) -> bool:
    """Add to `current` what `default` has and it lacks; True when something changed."""
    changed = _merge_map(current.metadata.labels, default.metadata.labels)
    changed |= _merge_map(current.metadata.annotations, default.metadata.annotations)
    kind = kinds.of(current).kind
    if kind in ("ClusterRole", "Role"):
        aggregated = kind == "ClusterRole" and bool(default.aggregation_rule.cluster_role_selectors)
        if aggregated:
            changed |= _merge_rules(current.aggregation_rule.cluster_role_selectors,
                                    default.aggregation_rule.cluster_role_selectors)
        else:
            changed |= _merge_rules(current.rules, default.rules)
    else:
        changed |= _merge_rules(current.subjects, default.subjects)
    return changed


async def ensure(store, default) -> str:
    """Create or reconcile one default object; returns what was done."""
    info = kinds.of(default)
    try:
        current = codec.unpack(await store.get(info, default.metadata.namespace, default.metadata.name))
    except errors.NotFound:
        await store.create(codec.copy(default))
        return "created"
    if current.metadata.annotations.get(bp.AUTOUPDATE) == "false" or not _merge(current, default):
        return ""
    await store.update(current)
    return "reconciled"


async def reconcile(store) -> None:
    for obj in [*bp.cluster_roles(), *bp.cluster_role_bindings(), *bp.namespaced(), *joinpolicy.objects()]:
        try:
            done = await ensure(store, obj)
        except errors.Conflict:             # another apiserver wrote it meanwhile: next start
            continue
        if done:
            log.info("%s %s %s", done, kinds.of(obj).kind.lower(), obj.metadata.name)
    await aggregate_stored(store)


async def aggregate_stored(store) -> None:
    """Aggregate from etcd before serving (the Aggregator then finds nothing to
    do at start): passes until nothing changes, since aggregated roles feed
    each other (view -> edit -> admin)."""
    info = kinds.BY_KIND["ClusterRole"]
    roles = {r.metadata.name: r for r in map(codec.unpack, (await store.list(info, objects.Filter(info))).items)}
    changed: set[str] = set()
    for _ in range(len(roles)):
        dirty = False
        for role in roles.values():
            if role.aggregation_rule.cluster_role_selectors:
                rules = aggregated_rules(role, roles.values())
                if list(role.rules) != rules:
                    del role.rules[:]
                    role.rules.extend(rules)
                    changed.add(role.metadata.name)
                    dirty = True
        if not dirty:
            break
    for name in sorted(changed):
        try:
            await store.update(roles[name])
        except errors.Conflict:             # the Aggregator will see the newer state
            continue


def aggregated_rules(role, cluster_roles) -> list:
    sels = [selectors.from_proto(s) for s in role.aggregation_rule.cluster_role_selectors]
    rules: list = []
    for other in sorted(cluster_roles, key=lambda r: r.metadata.name):
        if other.metadata.name != role.metadata.name and any(s.matches(other.metadata.labels) for s in sels):
            _merge_rules(rules, other.rules)
    return rules


class Aggregator:
    def __init__(self, store, cluster_roles: ObjectIndex):
        self.store = store
        self.index = cluster_roles
        self.dirty = asyncio.Event()
        cluster_roles.listeners.append(lambda keys: self.dirty.set())

    async def sync(self) -> None:
        roles = list(self.index.all())
        for role in roles:
            if not role.aggregation_rule.cluster_role_selectors:
                continue
            rules = aggregated_rules(role, roles)
            if list(role.rules) == rules:
                continue
            info = kinds.BY_KIND["ClusterRole"]
            try:
                fresh = codec.unpack(await self.store.get(info, "", role.metadata.name))
                del fresh.rules[:]
                fresh.rules.extend(rules)
                await self.store.update(fresh)
            except (errors.Conflict, errors.NotFound):
                self.dirty.set()             # the index will show the newer state: try again
            except errors.Unavailable as exc:
                log.warning("aggregating clusterrole %s: %s", role.metadata.name, exc.message)
                await asyncio.sleep(1.0)
                self.dirty.set()

    async def run(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            if self.index.ready:
                await self.sync()
