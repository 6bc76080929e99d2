"""The Priority admission plugin (Kubernetes' plugin/pkg/admission/priority).

On pod create, `spec.priorityClassName` is resolved to `spec.priority` and
`spec.preemptionPolicy` from the PriorityClass of that name; a pod without
a class gets the global default class (the lowest value among classes with
`globalDefault: true`; its name is written into the pod) or priority 0 and
PreemptLowerPriority when there is none. A pod that names a missing class,
or sets a priority / preemptionPolicy different from its class's, is
refused (403 Forbidden, Kubernetes' messages). The two system classes
(`system-cluster-critical`, `system-node-critical`) resolve even before
`bootstrap()` has stored them.

On PriorityClass create, a second `globalDefault: true` class is refused
("... is already marked as default. Only one default can exist").

PriorityClasses are read from the apiserver's watch cache: a `ClassCache`
(`store.priority_classes`, attached in apiserver/main.py) is a FencedIndex
(apiserver/admission_cache.py) of them, so a pod create costs no etcd read
(it was one range of every class per pod, ~31% of Store.create), with
read-your-writes for the PriorityClass writes this apiserver admits (a
script may create a class and at once a pod that names it).
"""
from __future__ import annotations

import time

from apiserver import objects
from apiserver.admission_cache import FENCE_SECONDS, FencedIndex
from apiserver.auth.index import ObjectIndex
from machinery import errors, kinds
from machinery.validation.placement import SYSTEM_CLASSES, SYSTEM_DESCRIPTIONS

PREEMPT_LOWER = "PreemptLowerPriority"
INFO = kinds.BY_KIND["PriorityClass"]


def _forbidden(obj, why: str) -> errors.Forbidden:
    info = kinds.of(obj)
    name = obj.metadata.name or obj.metadata.generate_name
    return errors.Forbidden(f'{info.resource} "{name}" is forbidden: {why}',
                            kind=info.plural, name=name, group=info.group)


def system_class(name: str):
    pc = kinds.new(INFO)
    pc.metadata.name = name
    pc.value = SYSTEM_CLASSES[name]
    pc.description = SYSTEM_DESCRIPTIONS[name]
    pc.preemption_policy = PREEMPT_LOWER
    return pc


def _view(pc):
    """What admission reads of a class."""
    return pc.metadata.uid, pc.value, pc.global_default, pc.preemption_policy


class ClassCache(FencedIndex):
    """The PriorityClasses admission reads (a FencedIndex with their view)."""

    def __init__(self, index: ObjectIndex, clock=time.monotonic, fence: float = FENCE_SECONDS):
        super().__init__(index, _view, clock, fence)

    @classmethod
    def attach(cls, cache) -> "ClassCache":
        """Follow the PriorityClass KindCache of an apiserver.watchcache.WatchCache."""
        return cls(ObjectIndex(INFO.kind).attach(cache[INFO.kind]))


def _cached(store) -> ObjectIndex | None:
    cache = getattr(store, "priority_classes", None)
    return cache.reader() if cache is not None else None


async def _classes(store) -> list:
    index = _cached(store)
    if index is not None:
        return list(index.all())
    kvs, _, _ = await store.storage.range(objects.prefix(INFO))
    return [objects.decode(INFO, kv.value, kv.mod_revision) for kv in kvs]


async def _get_class(store, name: str):
    index = _cached(store)
    if index is not None:
        pc = index.get("", name)
    else:
        kv, _ = await store.storage.get(objects.key(INFO, "", name))
        pc = objects.decode(INFO, kv.value, kv.mod_revision) if kv is not None else None
    if pc is not None:
        return pc
    return system_class(name) if name in SYSTEM_CLASSES else None


def note_write(req) -> None:
    """After the validating phase admitted a PriorityClass write: read-your-writes."""
    cache = getattr(req.store, "priority_classes", None)
    if cache is not None and req.info.kind == INFO.kind:
        cache.note(req)


def default_class(classes):
    """The global default: lowest value among globalDefault classes, or None."""
    defaults = [pc for pc in classes if pc.global_default]
    return min(defaults, key=lambda pc: pc.value) if defaults else None


async def admit_pod(store, pod) -> None:
    spec = pod.spec
    if spec.priority_class_name:
        pc = await _get_class(store, spec.priority_class_name)
        if pc is None:
            raise _forbidden(pod, f"no PriorityClass with name {spec.priority_class_name} was found")
    else:
        pc = default_class(await _classes(store))
        if pc is not None:
            spec.priority_class_name = pc.metadata.name
    priority = pc.value if pc is not None else 0
    policy = (pc.preemption_policy or PREEMPT_LOWER) if pc is not None else PREEMPT_LOWER
    if spec.HasField("priority") and spec.priority != priority:
        raise _forbidden(pod, f"the integer value of priority ({spec.priority}) must not be provided in pod "
                              f"spec; priority admission controller computed {priority} from the given "
                              "PriorityClass name")
    if spec.HasField("preemption_policy") and pc is not None and spec.preemption_policy != policy:
        raise _forbidden(pod, f"the string value of PreemptionPolicy ({spec.preemption_policy}) must not be "
                              f"provided in pod spec; priority admission controller computed {policy} from "
                              "the given PriorityClass name")
    spec.priority = priority
    if not spec.HasField("preemption_policy"):
        spec.preemption_policy = policy


async def admit_priority_class(store, pc) -> None:
    if not pc.global_default:
        return
    for other in await _classes(store):
        if other.global_default and other.metadata.name != pc.metadata.name:
            raise _forbidden(pc, f"PriorityClass {other.metadata.name} is already marked as default. "
                                 "Only one default can exist")


async def admit(store, obj) -> None:
    """Called by Store.create for every object, after defaulting."""
    kind = kinds.of(obj).kind
    if kind == "Pod":
        await admit_pod(store, obj)
    elif kind == "PriorityClass":
        await admit_priority_class(store, obj)


def admit_update(new, old) -> None:
    """On update the priority resolved at create is kept when the new object leaves it
    out (Kubernetes' Priority plugin, admitPod on Update); validation refuses a change."""
    if kinds.of(new).kind != "Pod":
        return
    if not new.spec.HasField("priority") and old.spec.HasField("priority"):
        new.spec.priority = old.spec.priority
    if not new.spec.HasField("preemption_policy") and old.spec.HasField("preemption_policy"):
        new.spec.preemption_policy = old.spec.preemption_policy


async def bootstrap(store) -> None:
    """Store the system classes if missing (Kubernetes' PostStartHook)."""
    for name in SYSTEM_CLASSES:
        try:
            await store.create(system_class(name))
        except errors.AlreadyExists:
            pass
