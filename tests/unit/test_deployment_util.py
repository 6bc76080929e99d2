"""Rollout arithmetic, with the cases Kubernetes' own tests use."""
import itertools

import pytest

from controllers import deployment_util as du
from machinery.pb import apps_pb2


def deployment(replicas=10, surge=None, unavailable=None, strategy="RollingUpdate", status_replicas=0):
    d = apps_pb2.Deployment()
    d.metadata.name = "web"
    d.spec.replicas = replicas
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        ru = d.spec.strategy.rolling_update
        for field, v in (("max_surge", surge), ("max_unavailable", unavailable)):
            if v is None:
                continue
            if isinstance(v, str):
                getattr(ru, field).str_val = v
            else:
                getattr(ru, field).int_val = v
    d.status.replicas = status_replicas
    return d


_clock = itertools.count(1000)


def rs(name, replicas, available=None, max_replicas=None, desired=None, created=None):
    r = apps_pb2.ReplicaSet()
    r.metadata.name = name
    r.metadata.creation_timestamp.seconds = created if created is not None else next(_clock)
    r.spec.replicas = replicas
    r.status.replicas = replicas
    r.status.available_replicas = replicas if available is None else available
    if max_replicas is not None:
        r.metadata.annotations[du.MAX_REPLICAS] = str(max_replicas)
    if desired is not None:
        r.metadata.annotations[du.DESIRED_REPLICAS] = str(desired)
    return r


@pytest.mark.parametrize("surge,unavailable,replicas,expect", [
    ("25%", "25%", 10, (3, 2)),      # surge rounds up, unavailable rounds down
    ("30%", "30%", 10, (3, 3)),
    ("1%", "1%", 10, (1, 0)),
    (0, 0, 10, (0, 1)),              # both zero: unavailable becomes 1
    ("0%", "0%", 10, (0, 1)),
    (3, 2, 10, (3, 2)),
    ("50%", "50%", 5, (3, 2)),
    (None, None, 4, (1, 1)),         # defaults 25%/25%
])
def test_fenceposts(surge, unavailable, replicas, expect):
    assert du.resolve_fenceposts(deployment(replicas, surge, unavailable)) == expect


def test_max_unavailable_capped_and_zero_for_recreate():
    assert du.max_unavailable(deployment(2, 0, 5)) == 2
    assert du.max_unavailable(deployment(0, 1, 1)) == 0
    assert du.max_unavailable(deployment(3, strategy="Recreate")) == 0
    assert du.max_surge(deployment(3, strategy="Recreate")) == 0


def test_bad_percent():
    with pytest.raises(ValueError):
        du.scaled_value(deployment(10, "abc").spec.strategy.rolling_update.max_surge, 10, True)


def test_new_rs_scale_up_respects_surge():
    d = deployment(10, 3, 2)
    old, new = rs("old", 10), rs("new", 0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3
    old2, new2 = rs("old", 8), rs("new", 3, available=0)
    assert du.new_rs_new_replicas(d, [old2, new2], new2) == 5
    full_old, full_new = rs("old", 10), rs("new", 3)
    assert du.new_rs_new_replicas(d, [full_old, full_new], full_new) == 3  # at max total
    assert du.new_rs_new_replicas(deployment(10, strategy="Recreate"), [new], new) == 10


def test_old_scale_down_keeps_min_available():
    d = deployment(10, 3, 2)
    old = rs("old", 10)
    new = rs("new", 3, available=0)
    # all=13, minAvailable=8, newUnavailable=3 -> may scale down 2.
    assert du.old_scale_down_plan(d, [old], new) == {"old": 8}
    # Unhealthy old replicas are removed first.
    old_unhealthy = rs("old", 10, available=7)
    plan = du.old_scale_down_plan(d, [old_unhealthy], rs("new", 3, available=3))
    assert plan["old"] <= 7
    assert du.old_scale_down_plan(d, [], new) == {}


def test_proportional_scaling_mid_rollout_10_to_30():
    """Kubernetes' documented example: 10 replicas, surge 3, unavailable 2,
    mid-rollout (old 8, new 5 = 13 total) scaled to 30 -> old 20, new 13."""
    d = deployment(30, 3, 2, status_replicas=13)
    old = rs("old", 8, max_replicas=13, desired=10, created=1)
    new = rs("new", 5, available=0, max_replicas=13, desired=10, created=2)
    plan = du.scale_plan(d, new, [old])
    assert plan == {"old": 20, "new": 13}
    assert sum(plan.values()) <= du.replicas(d) + du.max_surge(d)


def test_proportional_scaling_down():
    d = deployment(5, 3, 2, status_replicas=13)
    old = rs("old", 8, max_replicas=13, desired=10, created=1)
    new = rs("new", 5, max_replicas=13, desired=10, created=2)
    plan = du.scale_plan(d, new, [old])
    # allowed = replicas + surge = 8; old round(8*8/13)=5, new round(5*8/13)=3
    assert plan == {"old": 5, "new": 3}


def test_scale_single_active_takes_all():
    d = deployment(7, 3, 2)
    only = rs("only", 3)
    assert du.scale_plan(d, only, [rs("old", 0)]) == {"only": 7}
    assert du.scale_plan(d, rs("n", 7), []) == {}


def test_saturated_new_rs_scales_old_to_zero():
    d = deployment(4, 1, 1)
    new = rs("new", 4, desired=4)
    old = rs("old", 2)
    assert du.is_saturated(d, new)
    assert du.scale_plan(d, new, [old]) == {"old": 0}


def test_scaling_event_detection():
    d = deployment(5)
    assert du.is_scaling_event(d, [rs("a", 3, desired=3)])
    assert not du.is_scaling_event(d, [rs("a", 5, desired=5)])
    assert not du.is_scaling_event(d, [rs("a", 0, desired=3)])  # inactive


def test_round_half_away_from_zero():
    assert [du.round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -1.5, 2.4)] == [1, 2, 3, -1, -2, 2]


def test_template_hash_ignores_hash_label_and_is_stable():
    d = deployment(1)
    t = d.spec.template
    t.metadata.labels["app"] = "web"
    t.spec.containers.add(name="c", image="busybox")
    h = du.template_hash(t)
    t2 = apps_pb2.Deployment().spec.template
    t2.CopyFrom(t)
    t2.metadata.labels[du.POD_TEMPLATE_HASH] = h
    assert du.template_hash(t2) == h
    assert du.templates_equal(t, t2)
    assert du.template_hash(t, collision_count=1) != h
    t2.spec.containers[0].image = "busybox:1.36"
    assert not du.templates_equal(t, t2) and du.template_hash(t2) != h
    assert set(h) <= set(du._SAFE)


def test_rolling_simulation_stays_within_bounds():
    """Drive the rolling-update arithmetic to completion with pods becoming
    available one step later: total never exceeds replicas+surge and
    availability never falls below replicas-unavailable."""
    for replicas, surge, unavailable in [(10, 3, 2), (10, "25%", "25%"), (6, 1, 0), (6, 0, 1), (3, "50%", 0)]:
        d = deployment(replicas, surge, unavailable)
        s, u = du.resolve_fenceposts(d)
        old = rs("old", replicas, created=1)
        new = rs("new", 0, created=2)
        for _ in range(100):
            if du.replicas(old) == 0 and du.replicas(new) == replicas and new.status.available_replicas == replicas:
                break
            # new replica set scales up
            new.spec.replicas = du.new_rs_new_replicas(d, [old, new], new)
            new.status.replicas = new.spec.replicas
            assert du.replicas(old) + du.replicas(new) <= replicas + s
            # old scales down
            for name, n in du.old_scale_down_plan(d, [old], new).items():
                old.spec.replicas = n
                old.status.replicas = n
                old.status.available_replicas = min(old.status.available_replicas, n)
            avail = old.status.available_replicas + new.status.available_replicas
            assert avail >= replicas - u
            # one step later new pods become available
            new.status.available_replicas = new.spec.replicas
        else:
            pytest.fail(f"rollout did not finish for {replicas}/{surge}/{unavailable}")
