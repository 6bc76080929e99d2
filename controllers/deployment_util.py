"""The arithmetic of Deployment rollouts, as pure functions on protobuf
objects, following Kubernetes' pkg/controller/deployment/util.

Everything here is deterministic and side-effect free, so the controller
(controllers/deployment.py) decides *what* to do by calling these and then
does the writes. The unit tests pin the cases Kubernetes' own tests use
(rounding of percentages, proportional scaling mid-rollout).

Vocabulary:
- surge / unavailable: maxSurge and maxUnavailable resolved against
  spec.replicas (surge rounds up, unavailable rounds down, and both 0
  becomes unavailable 1: "fenceposts").
- desired-replicas / max-replicas annotations on a ReplicaSet record the
  deployment's replicas and replicas+surge when the controller last scaled
  it; proportional scaling uses them to split a change in replicas across
  the active ReplicaSets.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from machinery.pb import apps_pb2, meta_pb2

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"
# Annotations of a Deployment that are copied to its ReplicaSets.
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
               DESIRED_REPLICAS, MAX_REPLICAS}

_PERCENT = re.compile(r"^(\d+)%$")


# ------------------------------------------------------------- fenceposts

def scaled_value(value: meta_pb2.IntOrString, total: int, round_up: bool) -> int:
    """An IntOrString as a count: ints as is, "25%" of total rounded."""
    which = value.WhichOneof("value")
    if which == "int_val":
        return value.int_val
    if which == "str_val":
        m = _PERCENT.match(value.str_val)
        if not m:
            raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value.str_val!r}")
        pct = int(m.group(1))
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return 0


def replicas(obj) -> int:
    """spec.replicas of a Deployment or ReplicaSet (1 when unset, like the defaulter)."""
    return obj.spec.replicas if obj.spec.HasField("replicas") else 1


def is_rolling(d: apps_pb2.Deployment) -> bool:
    return d.spec.strategy.type in ("", "RollingUpdate")


def resolve_fenceposts(d: apps_pb2.Deployment) -> tuple[int, int]:
    ru = d.spec.strategy.rolling_update
    desired = replicas(d)
    surge = scaled_value(ru.max_surge, desired, True) if ru.HasField("max_surge") else math.ceil(desired * 0.25)
    unavailable = (scaled_value(ru.max_unavailable, desired, False) if ru.HasField("max_unavailable")
                   else math.floor(desired * 0.25))
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: apps_pb2.Deployment) -> int:
    if not is_rolling(d):
        return 0
    return resolve_fenceposts(d)[0]


def max_unavailable(d: apps_pb2.Deployment) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


# ------------------------------------------------------- replica set sums

def total_replicas(rss: Iterable[apps_pb2.ReplicaSet]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def total_actual(rss: Iterable[apps_pb2.ReplicaSet]) -> int:
    return sum(rs.status.replicas for rs in rss if rs is not None)


def total_available(rss: Iterable[apps_pb2.ReplicaSet]) -> int:
    return sum(rs.status.available_replicas for rs in rss if rs is not None)


def total_ready(rss: Iterable[apps_pb2.ReplicaSet]) -> int:
    return sum(rs.status.ready_replicas for rs in rss if rs is not None)


def active(rss: Iterable[apps_pb2.ReplicaSet]) -> list[apps_pb2.ReplicaSet]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def _int_annotation(obj, key: str) -> int | None:
    v = obj.metadata.annotations.get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


# ------------------------------------------------------------ rolling update

def new_rs_new_replicas(d: apps_pb2.Deployment, all_rss: Sequence[apps_pb2.ReplicaSet],
                        new_rs: apps_pb2.ReplicaSet) -> int:
    """How many replicas the new ReplicaSet may have now (NewRSNewReplicas)."""
    if not is_rolling(d):
        return replicas(d)
    current = total_replicas(all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + max(scale_up, 0)


def old_scale_down_plan(d: apps_pb2.Deployment, old_rss: Sequence[apps_pb2.ReplicaSet],
                        new_rs: apps_pb2.ReplicaSet | None) -> dict[str, int]:
    """New sizes for old ReplicaSets during a rolling update
    (reconcileOldReplicaSets): first drop unhealthy old replicas, then scale
    down available ones, never letting availability fall below
    replicas - maxUnavailable. Returns {rs name: new replicas} for the ones
    that change."""
    old_count = total_replicas(old_rss)
    if old_count == 0:
        return {}
    all_rss = list(old_rss) + ([new_rs] if new_rs is not None else [])
    all_count = total_replicas(all_rss)
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = (replicas(new_rs) - new_rs.status.available_replicas) if new_rs is not None else 0
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    plan: dict[str, int] = {}
    sizes = {rs.metadata.name: replicas(rs) for rs in old_rss}

    # Clean up unhealthy replicas first (oldest first), bounded by max_scaled_down.
    cleaned = 0
    for rs in sort_oldest_first(old_rss):
        if cleaned >= max_scaled_down:
            break
        size = sizes[rs.metadata.name]
        if size == 0:
            continue
        unhealthy = size - rs.status.available_replicas
        if unhealthy <= 0:
            continue
        drop = min(max_scaled_down - cleaned, unhealthy)
        sizes[rs.metadata.name] = size - drop
        plan[rs.metadata.name] = size - drop
        cleaned += drop

    # Then scale down available replicas while availability allows it.
    available = total_available(all_rss)
    if available > min_available:
        budget = available - min_available
        for rs in sort_oldest_first(old_rss):
            if budget <= 0:
                break
            size = sizes[rs.metadata.name]
            if size == 0:
                continue
            drop = min(size, budget)
            sizes[rs.metadata.name] = size - drop
            plan[rs.metadata.name] = size - drop
            budget -= drop
    return plan


def sort_oldest_first(rss: Iterable[apps_pb2.ReplicaSet]) -> list[apps_pb2.ReplicaSet]:
    return sorted(rss, key=lambda rs: (rs.metadata.creation_timestamp.seconds, rs.metadata.name))


# ------------------------------------------------------ proportional scaling

def replica_set_fraction(rs: apps_pb2.ReplicaSet, d: apps_pb2.Deployment) -> int:
    """getReplicaSetFraction: this ReplicaSet's share of a scaling event."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None or annotated == 0:
        annotated = d.status.replicas
    if annotated == 0:
        return 0
    new_size = round_half_away(replicas(rs) * deployment_replicas / annotated)
    return new_size - replicas(rs)


def round_half_away(x: float) -> int:
    """Go's math.Round: halves away from zero (Python's round() is banker's)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def proportion(rs: apps_pb2.ReplicaSet, d: apps_pb2.Deployment, to_add: int, added: int) -> int:
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    if to_add > 0:
        return min(fraction, allowed)
    return max(fraction, allowed)


def find_active_or_latest(new_rs, old_rss) -> apps_pb2.ReplicaSet | None:
    """The only active ReplicaSet; the newest one when none is active; None
    when several are active (FindActiveOrLatest)."""
    everything = [rs for rs in [new_rs, *old_rss] if rs is not None]
    if not everything:
        return None
    act = active(everything)
    if len(act) == 1:
        return act[0]
    if not act:
        return new_rs if new_rs is not None else sort_oldest_first(old_rss)[-1]
    return None


def scale_plan(d: apps_pb2.Deployment, new_rs: apps_pb2.ReplicaSet | None,
               old_rss: Sequence[apps_pb2.ReplicaSet]) -> dict[str, int]:
    """The `scale()` step run on a scaling event or while paused. Returns
    {rs name: new replicas} for the ReplicaSets whose size changes.

    One active ReplicaSet takes the whole count; a saturated new one means
    old ones go to 0; otherwise (rolling update with several active) the
    change is split in proportion to their sizes, leftovers to the largest."""
    target = find_active_or_latest(new_rs, old_rss)
    if target is not None:
        return {} if replicas(target) == replicas(d) else {target.metadata.name: replicas(d)}
    if is_saturated(d, new_rs):
        return {rs.metadata.name: 0 for rs in active(old_rss)}
    if not is_rolling(d):
        return {}
    act = active([rs for rs in [*old_rss, new_rs] if rs is not None])
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total_replicas(act)
    if to_add > 0:   # scaling up: bigger (then newer) first
        ordered = sorted(act, key=lambda rs: (-replicas(rs), -rs.metadata.creation_timestamp.seconds, rs.metadata.name))
    else:            # scaling down: bigger (then older) first
        ordered = sorted(act, key=lambda rs: (-replicas(rs), rs.metadata.creation_timestamp.seconds, rs.metadata.name))
    added = 0
    sizes: dict[str, int] = {}
    for rs in ordered:
        p = proportion(rs, d, to_add, added)
        sizes[rs.metadata.name] = replicas(rs) + p
        added += p
    if to_add and ordered:
        first = ordered[0].metadata.name
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return {name: n for name, n in sizes.items()
            if n != replicas(next(rs for rs in act if rs.metadata.name == name))}


def is_saturated(d: apps_pb2.Deployment, rs: apps_pb2.ReplicaSet | None) -> bool:
    if rs is None:
        return False
    desired = _int_annotation(rs, DESIRED_REPLICAS)
    return (replicas(rs) == replicas(d) and desired == replicas(d)
            and rs.status.available_replicas == replicas(d))


def is_scaling_event(d: apps_pb2.Deployment, rss: Sequence[apps_pb2.ReplicaSet]) -> bool:
    """Some active ReplicaSet records a different desired size than spec.replicas."""
    for rs in active(rss):
        desired = _int_annotation(rs, DESIRED_REPLICAS)
        if desired is not None and desired != replicas(d):
            return True
    return False


def replica_annotations(d: apps_pb2.Deployment) -> dict[str, str]:
    return {DESIRED_REPLICAS: str(replicas(d)), MAX_REPLICAS: str(replicas(d) + max_surge(d))}


# ------------------------------------------------------ templates, revisions

def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: map digits/letters onto an alphabet without vowels."""
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in s)


def template_hash(template, collision_count: int = 0) -> str:
    """pod-template-hash of a PodTemplateSpec (ignoring an existing hash label)."""
    t = type(template)()
    t.CopyFrom(template)
    t.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    data = t.SerializeToString(deterministic=True)
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def templates_equal(a, b) -> bool:
    """Equal ignoring the pod-template-hash label (EqualIgnoreHash)."""
    ta, tb = type(a)(), type(b)()
    ta.CopyFrom(a)
    tb.CopyFrom(b)
    ta.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    tb.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    return ta.SerializeToString(deterministic=True) == tb.SerializeToString(deterministic=True)


def revision(obj) -> int:
    return _int_annotation(obj, REVISION) or 0


def max_revision(rss: Iterable[apps_pb2.ReplicaSet]) -> int:
    return max((revision(rs) for rs in rss if rs is not None), default=0)


def copyable_annotations(d: apps_pb2.Deployment) -> dict[str, str]:
    return {k: v for k, v in d.metadata.annotations.items() if k not in _NOT_COPIED}
