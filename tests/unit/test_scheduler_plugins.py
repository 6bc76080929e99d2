"""Every filter and score plugin against a small NodeCache, through the Snapshot."""
import numpy as np
import pytest

from scheduler import hollow
from scheduler.algorithm import Algorithm
from scheduler.cache import NodeCache
from scheduler.cycle_state import CycleState
from scheduler.framework import Code, pod_info
from scheduler.plugins import (BalancedAllocation, LeastAllocated, NodeAffinity, NodeName, NodeResourcesFit,
                               NodeUnschedulable, OwnerSpread, TaintToleration)
from scheduler.snapshot import Snapshot


def cache_of(*nodes):
    c = NodeCache(capacity=2)
    for n in nodes:
        c.set_node(n)
    return c


def verdicts(plugin, pod, cache):
    snap = Snapshot(cache)
    return {name: plugin.filter_node(CycleState(), pod_info(pod), snap, name).reasons for name in cache.index}


def scores(plugin, pod, cache, idx):
    state, snap, pi = CycleState(), Snapshot(cache), pod_info(pod)
    if hasattr(plugin, "pre_score") and plugin.pre_score(state, pi, snap, idx).code == Code.SKIP:
        return None
    return plugin.score(state, pi, snap, idx)


# ------------------------------------------------------------ NodeResourcesFit

def test_fit_cpu_memory_pods():
    c = cache_of(hollow.node("a", cpu="1", memory="1Gi", pods="2"),
                 hollow.node("b", cpu="4", memory="512Mi"),
                 hollow.node("c", cpu="4", memory="8Gi", pods="0"))
    p = hollow.pod("p", cpu="1500m", memory="768Mi")
    v = verdicts(NodeResourcesFit(), p, c)
    assert v == {"a": ("Insufficient cpu",), "b": ("Insufficient memory",),
                 "c": ("Too many pods", )}
    big = hollow.pod("q", cpu="5", memory="10Gi")
    assert verdicts(NodeResourcesFit(), big, c)["c"] == ("Too many pods", "Insufficient cpu", "Insufficient memory")


def test_fit_counts_assumed_and_bound_pods_and_releases_them():
    c = cache_of(hollow.node("a", cpu="2", memory="2Gi", pods="3"))
    first = pod_info(hollow.pod("p1", cpu="1500m"))
    c.assume(first, "a")
    p = hollow.pod("p2", cpu="1")
    assert verdicts(NodeResourcesFit(), p, c)["a"] == ("Insufficient cpu",)
    c.forget(first.uid)
    assert verdicts(NodeResourcesFit(), p, c)["a"] == ()
    bound = hollow.pod("p3", cpu="1500m", node_name="a")
    c.add_pod(bound)
    assert verdicts(NodeResourcesFit(), p, c)["a"] == ("Insufficient cpu",)
    c.remove_pod(bound.metadata.uid)
    assert verdicts(NodeResourcesFit(), p, c)["a"] == ()


def test_fit_zero_request_only_checks_pod_count():
    c = cache_of(hollow.node("a", cpu="0", memory="0", pods="1"))
    v = verdicts(NodeResourcesFit(), hollow.pod("p"), c)
    assert v["a"] == ()
    c.add_pod(hollow.pod("x", node_name="a"))
    assert verdicts(NodeResourcesFit(), hollow.pod("p"), c)["a"] == ("Too many pods",)


def test_fit_sums_containers():
    c = cache_of(hollow.node("a", cpu="1"))
    assert verdicts(NodeResourcesFit(), hollow.pod("p", cpu="600m", containers=2), c)["a"] == ("Insufficient cpu",)
    assert verdicts(NodeResourcesFit(), hollow.pod("p", cpu="500m", containers=2), c)["a"] == ()


# ------------------------------------------------------- NodeUnschedulable

def test_unschedulable_node_and_toleration():
    c = cache_of(hollow.node("a", unschedulable=True), hollow.node("b"))
    assert verdicts(NodeUnschedulable(), hollow.pod("p"), c) == {"a": ("node(s) were unschedulable",), "b": ()}
    tol = hollow.pod("p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                        "effect": "NoSchedule"}])
    assert verdicts(NodeUnschedulable(), tol, c) == {"a": (), "b": ()}
    assert NodeUnschedulable.status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE


# ------------------------------------------------------------------ NodeName

def test_node_name():
    c = cache_of(hollow.node("a"), hollow.node("b"))
    p = hollow.pod("p")
    p.spec.node_name = "b"
    assert verdicts(NodeName(), p, c) == {"a": ("node(s) didn't match the requested node name",), "b": ()}
    assert verdicts(NodeName(), hollow.pod("q"), c) == {"a": (), "b": ()}


# ----------------------------------------------------------- TaintToleration

TAINTS = {
    "nosched": [("dedicated", "gpu", "NoSchedule")],
    "noexec": [("dedicated", "db", "NoExecute")],
    "prefer": [("soft", "x", "PreferNoSchedule")],
    "clean": [],
}


@pytest.mark.parametrize("tolerations,expected_ok", [
    ([], {"prefer", "clean"}),
    ([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], {"nosched", "prefer", "clean"}),
    ([{"key": "dedicated", "value": "gpu"}], {"nosched", "prefer", "clean"}),            # empty op = Equal, any effect
    ([{"key": "dedicated", "operator": "Equal", "value": "cpu"}], {"prefer", "clean"}),
    ([{"key": "dedicated", "operator": "Exists"}], {"nosched", "noexec", "prefer", "clean"}),
    ([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], {"noexec", "prefer", "clean"}),
    ([{"operator": "Exists"}], {"nosched", "noexec", "prefer", "clean"}),                # empty key tolerates all
])
def test_taints(tolerations, expected_ok):
    c = cache_of(*(hollow.node(n, taints=t) for n, t in TAINTS.items()))
    v = verdicts(TaintToleration(), hollow.pod("p", tolerations=tolerations), c)
    assert {n for n, r in v.items() if not r} == expected_ok
    if "nosched" not in expected_ok:
        assert v["nosched"] == ("node(s) had untolerated taint {dedicated: gpu}",)


def test_not_ready_node_is_an_implicit_taint():
    c = cache_of(hollow.node("down", ready="False"), hollow.node("lost", ready="Unknown"), hollow.node("ok"))
    v = verdicts(TaintToleration(), hollow.pod("p"), c)
    assert v == {"down": ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",),
                 "lost": ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",),
                 "ok": ()}
    tol = hollow.pod("p", tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert verdicts(TaintToleration(), tol, c)["down"] == ()


def test_taint_groups_are_shared():
    c = cache_of(*(hollow.node(f"n{i}", taints=[("k", "v", "NoSchedule")] if i % 2 else []) for i in range(100)))
    assert len(c.taint_groups) == 2
    v = verdicts(TaintToleration(), hollow.pod("p"), c)
    assert sum(1 for r in v.values() if r) == 50


# --------------------------------------------------------------- NodeAffinity

def labelled():
    return cache_of(hollow.node("a", labels={"zone": "z1", "disk": "ssd", "gen": "3"}),
                    hollow.node("b", labels={"zone": "z2", "gen": "5"}),
                    hollow.node("c", labels={"zone": "z3", "gen": "x"}))


def fits(pod, cache):
    return {n for n, r in verdicts(NodeAffinity(), pod, cache).items() if not r}


def test_node_selector():
    c = labelled()
    assert fits(hollow.pod("p", node_selector={"zone": "z1"}), c) == {"a"}
    assert fits(hollow.pod("p", node_selector={"zone": "z1", "disk": "hdd"}), c) == set()
    assert fits(hollow.pod("p", node_selector={"nokey": "x"}), c) == set()
    v = verdicts(NodeAffinity(), hollow.pod("p", node_selector={"zone": "z2"}), c)
    assert v["a"] == ("node(s) didn't match Pod's node affinity/selector",)


@pytest.mark.parametrize("expr,expected", [
    (("zone", "In", ["z1", "z2"]), {"a", "b"}),
    (("zone", "NotIn", ["z1"]), {"b", "c"}),
    (("disk", "NotIn", ["ssd"]), {"b", "c"}),          # absent label matches NotIn
    (("disk", "Exists", []), {"a"}),
    (("disk", "DoesNotExist", []), {"b", "c"}),
    (("gen", "Gt", ["3"]), {"b"}),                     # "x" is not an integer
    (("gen", "Lt", ["5"]), {"a"}),
    (("gen", "Gt", ["notanint"]), set()),
    (("zone", "In", ["nope"]), set()),
])
def test_required_affinity_operators(expr, expected):
    assert fits(hollow.require(hollow.pod("p"), [expr]), labelled()) == expected


def test_required_terms_are_ored_and_expressions_anded():
    c = labelled()
    p = hollow.require(hollow.pod("p"), [("zone", "In", ["z1"]), ("disk", "DoesNotExist", [])],
                       [("gen", "In", ["5"])])
    assert fits(p, c) == {"b"}
    # nodeSelector AND affinity
    p2 = hollow.require(hollow.pod("p", node_selector={"zone": "z3"}), [("gen", "Exists", [])])
    assert fits(p2, c) == {"c"}


def test_match_fields_metadata_name():
    c = labelled()
    p = hollow.pod("p")
    t = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms.add()
    t.match_fields.add(key="metadata.name", operator="In", values=["b", "zz"])
    assert fits(p, c) == {"b"}


def test_preferred_affinity_score():
    c = labelled()
    p = hollow.prefer(hollow.prefer(hollow.pod("p"), 10, [("zone", "In", ["z1"])]), 30, [("gen", "Gt", ["4"])])
    s = scores(NodeAffinity(), p, c, np.arange(3))
    assert list(s) == pytest.approx([100 / 3, 100, 0])
    # without PreScore (nothing in the CycleState) the score computes the same
    assert list(NodeAffinity().score(CycleState(), pod_info(p), Snapshot(c), np.arange(3))) == list(s)
    assert scores(NodeAffinity(), hollow.pod("q"), c, np.arange(3)) is None        # PreScore: SKIP
    no_pref = NodeAffinity().score(CycleState(), pod_info(hollow.pod("q")), Snapshot(c), np.arange(3))
    assert list(no_pref) == [0, 0, 0]


# -------------------------------------------------------------------- scores

def test_least_allocated_prefers_emptier_nodes():
    c = cache_of(hollow.node("a", cpu="4", memory="4Gi"), hollow.node("b", cpu="4", memory="4Gi"))
    c.add_pod(hollow.pod("x", cpu="2", memory="2Gi", node_name="a"))
    s = scores(LeastAllocated(), hollow.pod("p", cpu="1", memory="1Gi"), c, np.arange(2))
    assert s[0] == pytest.approx(25.0) and s[1] == pytest.approx(75.0)


def test_least_allocated_uses_nonzero_defaults():
    c = cache_of(hollow.node("a", cpu="1000m", memory="1000Mi"))
    s = scores(LeastAllocated(), hollow.pod("p"), c, np.arange(1))
    assert s[0] == pytest.approx(((1 - 0.1) + (1 - 0.2)) * 50)


def test_balanced_allocation():
    c = cache_of(hollow.node("a", cpu="4", memory="4Gi"), hollow.node("b", cpu="4", memory="4Gi"))
    c.add_pod(hollow.pod("x", cpu="2", node_name="b"))
    s = scores(BalancedAllocation(), hollow.pod("p", cpu="1", memory="1Gi"), c, np.arange(2))
    assert s[0] == pytest.approx(100.0)                      # 25% / 25%
    assert s[1] == pytest.approx((1 - abs(0.75 - 0.25) / 2) * 100)


def test_owner_spread():
    c = cache_of(hollow.node("a"), hollow.node("b"), hollow.node("c"))
    for i in range(2):
        c.add_pod(hollow.pod(f"x{i}", owner_uid="rs1", node_name="a"))
    c.add_pod(hollow.pod("y", owner_uid="rs1", node_name="b"))
    c.add_pod(hollow.pod("z", owner_uid="other", node_name="c"))
    s = scores(OwnerSpread(), hollow.pod("p", owner_uid="rs1"), c, np.arange(3))
    assert list(s) == [0, 50, 100]
    assert list(scores(OwnerSpread(), hollow.pod("p", owner_uid="new"), c, np.arange(3))) == [100] * 3


def test_algorithm_spreads_replicas_and_respects_fit():
    c = cache_of(*(hollow.node(f"n{i}", cpu="2") for i in range(4)))
    algo = Algorithm(c)
    placed = []
    for i in range(8):
        pi = pod_info(hollow.pod(f"p{i}", cpu="1", owner_uid="rs"))
        r = algo.schedule(pi)
        c.assume(pi, r.node)
        placed.append(r.node)
    assert sorted(placed) == sorted([f"n{i}" for i in range(4)] * 2)
    r = algo.schedule(pod_info(hollow.pod("extra", cpu="1", owner_uid="rs")))
    assert r.node is None and r.message() == "0/4 nodes are available: 4 Insufficient cpu."
