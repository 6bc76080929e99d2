"""PodTopologySpread and InterPodAffinity against Kubernetes' own cases.

Spread filter cases are from podtopologyspread/filtering_test.go
(TestSingleConstraint, TestMultipleConstraints, TestPreFilterStateAddPod),
score cases from scoring_test.go (TestPodTopologySpreadScore); affinity
cases from interpodaffinity/filtering_test.go (TestRequiredAffinitySingleNode,
TestRequiredAffinityMultipleNodes) and scoring_test.go (TestPreferredAffinity).
Each test names the case it reproduces.
"""
from __future__ import annotations

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from scheduler import hollow
from scheduler.cache import NodeCache
from scheduler.cycle_state import CycleState
from scheduler.framework import pod_info
from scheduler.plugins import InterPodAffinity, PodTopologySpread
from scheduler.plugins.interpodaffinity import ERR_AFFINITY, ERR_ANTI_AFFINITY, ERR_EXISTING_ANTI_AFFINITY
from scheduler.plugins.topologyspread import ERR_CONSTRAINTS, ERR_MISSING_LABEL
from scheduler.snapshot import Snapshot


def cluster(nodes: dict[str, dict], pods=()) -> NodeCache:
    """nodes: name -> labels; pods: (name, node, labels[, namespace])."""
    c = NodeCache(capacity=2)
    for name, labels in nodes.items():
        n = hollow.node(name, labels=labels)
        if "kubernetes.io/hostname" not in labels:
            del n.metadata.labels["kubernetes.io/hostname"]
        c.set_node(n)
    for p in pods:
        c.add_pod(existing(*p))
    return c


def existing(name, node, labels, namespace="default"):
    return hollow.pod(name, node_name=node, labels=labels, namespace=namespace)


def spread(p, key, skew=1, action="DoNotSchedule", selector=None, **extra):
    c = p.spec.topology_spread_constraints.add(max_skew=skew, topology_key=key, when_unsatisfiable=action)
    for k, v in (selector if selector is not None else {"foo": ""}).items():
        c.label_selector.match_expressions.add(key=k, operator="Exists") if v is None else \
            c.label_selector.match_labels.update({k: v})
    for f, v in extra.items():
        if isinstance(v, list):
            getattr(c, f).extend(v)
        else:
            setattr(c, f, v)
    return p


def verdicts(plugin, pod, cache) -> dict[str, str]:
    snap, state, pi = Snapshot(cache), CycleState(), pod_info(pod)
    assert plugin.pre_filter(state, pi, snap).ok
    r = plugin.filter(state, pi, snap)
    return {name: r.status_at(i).message() for name, i in cache.index.items()}


def fits(v: dict) -> set[str]:
    return {n for n, why in v.items() if not why}


ZONES = {"node-a": {"zone": "zone1", "node": "node-a"}, "node-b": {"zone": "zone1", "node": "node-b"},
         "node-x": {"zone": "zone2", "node": "node-x"}, "node-y": {"zone": "zone2", "node": "node-y"}}
FOO = {"foo": ""}


def pods_per_node(**counts):
    """2/1/0/3-style layouts: node-a=2 -> p-a0, p-a1 on node-a with label foo."""
    return [(f"p-{n[-1]}{i}", n.replace("_", "-"), FOO) for n, k in counts.items() for i in range(k)]


# ---------------------------------------------------------------- spread filter

def test_no_existing_pods():
    """TestSingleConstraint "no existing pods": every node fits."""
    v = verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "zone"), cluster(ZONES))
    assert fits(v) == set(ZONES)


def test_existing_pods_in_a_different_namespace_do_not_count():
    """TestSingleConstraint "existing pods in a different namespace do not count"."""
    c = cluster(ZONES, [("p-a1", "node-a", FOO, "ns1"), ("p-b1", "node-b", FOO, "ns1"),
                        ("p-x1", "node-x", FOO), ("p-x2", "node-x", FOO)])
    v = verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "zone"), c)
    assert fits(v) == {"node-a", "node-b"}
    assert v["node-x"] == ERR_CONSTRAINTS


def test_pods_spread_across_zones_as_1_2_due_to_absence_of_label_zone_on_node_b():
    """TestSingleConstraint "pods spread across zones as 1/2 due to absence of label 'zone' on node-b"."""
    nodes = dict(ZONES, **{"node-b": {"node": "node-b"}})
    c = cluster(nodes, [("p-a1", "node-a", FOO), ("p-b1", "node-b", FOO), ("p-x1", "node-x", FOO),
                        ("p-y1", "node-y", FOO)])
    v = verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "zone"), c)
    assert v == {"node-a": "", "node-b": ERR_MISSING_LABEL, "node-x": ERR_CONSTRAINTS, "node-y": ERR_CONSTRAINTS}


def test_pods_spread_across_nodes_as_2_1_0_3_only_node_x_fits():
    """TestSingleConstraint "pods spread across nodes as 2/1/0/3, only node-x fits", and
    "... maxSkew is 2, node-b and node-x fit"."""
    c = cluster(ZONES, pods_per_node(node_a=2, node_b=1, node_y=3))
    assert fits(verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "node"), c)) == {"node-x"}
    two = spread(hollow.pod("p", labels=FOO), "node", skew=2)
    assert fits(verdicts(PodTopologySpread(), two, c)) == {"node-b", "node-x"}


def test_pods_spread_as_2_1_0_3_but_pod_does_not_match_itself():
    """TestSingleConstraint "pods spread across nodes as 2/1/0/3, but pod doesn't match itself"."""
    c = cluster(ZONES, pods_per_node(node_a=2, node_b=1, node_y=3))
    p = spread(hollow.pod("p", labels={"bar": ""}), "node")
    assert fits(verdicts(PodTopologySpread(), p, c)) == {"node-b", "node-x"}


def test_incoming_pod_has_node_affinity_so_only_matching_nodes_count():
    """TestSingleConstraint "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits"."""
    c = cluster(ZONES, pods_per_node(node_a=2, node_b=1, node_y=3))
    p = hollow.require(spread(hollow.pod("p", labels=FOO), "node"), [("node", "In", ["node-a", "node-y"])])
    assert "node-a" in fits(verdicts(PodTopologySpread(), p, c))
    ignore = hollow.require(spread(hollow.pod("p", labels=FOO), "node", node_affinity_policy="Ignore"),
                            [("node", "In", ["node-a", "node-y"])])
    assert "node-a" not in fits(verdicts(PodTopologySpread(), ignore, c))


def test_terminating_pods_should_be_excluded():
    """TestSingleConstraint "terminating Pods should be excluded"."""
    c = cluster({"node-a": {"node": "node-a"}, "node-b": {"node": "node-b"}})
    gone = existing("p-a", "node-a", FOO)
    gone.metadata.deletion_timestamp.CopyFrom(Timestamp(seconds=1))
    c.add_pod(gone)
    c.add_pod(existing("p-b", "node-b", FOO))
    assert fits(verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "node"), c)) == {"node-a"}


def test_min_domains_greater_than_the_number_of_domains_makes_the_global_minimum_zero():
    """TestSingleConstraint "pods spread across zone as 2/1, minDomains is greater than the number of
    domains, and the global minimum is 0" (and the "equal to" variant)."""
    c = cluster(ZONES, pods_per_node(node_a=2, node_x=1))
    v = verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "zone", skew=2, min_domains=3), c)
    assert fits(v) == {"node-x", "node-y"}          # zone1: 2+1-0 = 3 > 2
    v = verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "zone", skew=2, min_domains=2), c)
    assert fits(v) == set(ZONES)                     # global minimum 1


def test_two_constraints_on_zone_and_node_and_match_label_keys():
    """TestMultipleConstraints "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]"
    and matchLabelKeys ANDed with the selector."""
    c = cluster(ZONES, pods_per_node(node_a=2, node_b=1, node_y=3))
    p = spread(spread(hollow.pod("p", labels=FOO), "zone"), "node")
    assert fits(verdicts(PodTopologySpread(), p, c)) == {"node-x"}
    keyed = spread(hollow.pod("p", labels={"foo": "", "rev": "2"}), "node", match_label_keys=["rev"])
    assert fits(verdicts(PodTopologySpread(), keyed, c)) == set(ZONES)     # no pod has rev=2


def test_add_pod_and_remove_pod_adjust_the_prefilter_state():
    """TestPreFilterStateAddPod "node a and b both impact current min match" and the RemovePod twin."""
    c = cluster({"node-a": {"zone": "zone1", "node": "node-a"}, "node-b": {"zone": "zone1", "node": "node-b"}})
    plugin, snap = PodTopologySpread(), Snapshot(c)
    pi = pod_info(spread(hollow.pod("p", labels=FOO), "node"))
    state = CycleState()
    plugin.pre_filter(state, pi, snap)
    c.add_pod(existing("p-a1", "node-a", FOO))
    rec, slot = c.pods["uid-default-p-a1"], c.index["node-a"]
    clone = state.clone()
    plugin.add_pod(clone, pi, rec, slot, snap)
    assert list(clone.read(plugin.FILTER_KEY).domains[0]) == [1, 0]
    assert list(state.read(plugin.FILTER_KEY).domains[0]) == [0, 0]         # the original is untouched
    assert not plugin.filter(clone, pi, snap).codes[c.index["node-b"]]
    assert plugin.filter(clone, pi, snap).codes[slot] == 2
    plugin.remove_pod(clone, pi, rec, slot, snap)
    assert list(clone.read(plugin.FILTER_KEY).domains[0]) == [0, 0]


# ----------------------------------------------------------------- spread score

def spread_scores(pod, cache, plugin=None):
    plugin = plugin or PodTopologySpread()
    snap, state, pi = Snapshot(cache), CycleState(), pod_info(pod)
    idx = np.array(sorted(cache.index.values()))
    if plugin.pre_score(state, pi, snap, idx).code.name == "SKIP":
        return None
    out = plugin.score(state, pi, snap, idx)
    return {cache.names[i]: int(s) for i, s in zip(idx, out)}


def test_score_one_constraint_on_node_no_existing_pods():
    """TestPodTopologySpreadScore "one constraint on node, no existing pods": all 100."""
    c = cluster({"node-a": {"node": "node-a"}, "node-b": {"node": "node-b"}})
    p = spread(hollow.pod("p", labels=FOO), "node", action="ScheduleAnyway")
    assert spread_scores(p, c) == {"node-a": 100, "node-b": 100}


def test_score_one_constraint_on_node_all_nodes_have_the_same_number_of_matching_pods():
    """TestPodTopologySpreadScore "one constraint on node, all 4 nodes are candidates", with the
    spread 1/2/0/3 (scores recomputed by Kubernetes' formula below)."""
    c = cluster({f"node-{x}": {"node": f"node-{x}"} for x in "abcd"},
                pods_per_node(node_a=1, node_b=2, node_d=3))
    p = spread(hollow.pod("p", labels=FOO), "node", action="ScheduleAnyway")
    got = spread_scores(p, c)
    # raw = round(count * ln(4 + 2)): 2, 4, 0, 5 -> 100 * (5 + 0 - raw) / 5
    assert got == {"node-a": 60, "node-b": 20, "node-c": 100, "node-d": 0}


def test_score_nodes_missing_the_key_score_zero_and_no_constraints_skip():
    """TestPodTopologySpreadScore "one constraint on zone, node-x doesn't have label zone"."""
    c = cluster({"node-a": {"zone": "zone1"}, "node-b": {"zone": "zone2"}, "node-x": {}},
                [("p-a1", "node-a", FOO)])
    p = spread(hollow.pod("p", labels=FOO), "zone", action="ScheduleAnyway")
    got = spread_scores(p, c)
    assert got["node-x"] == 0 and got["node-b"] == 100 and got["node-a"] < 100
    assert spread_scores(hollow.pod("q", labels=FOO), c) is None


def test_system_defaults_spread_a_controllers_pods_by_zone():
    """kube-scheduler's system default constraints (defaultingType: System) score by owner."""
    c = cluster({"node-a": {"topology.kubernetes.io/zone": "z1"}, "node-b": {"topology.kubernetes.io/zone": "z2"}})
    for i in range(2):
        c.add_pod(hollow.pod(f"rs-{i}", node_name="node-a", owner_uid="rs1"))
    plugin = PodTopologySpread.new({"defaultingType": "System"}, None)
    got = spread_scores(hollow.pod("new", owner_uid="rs1"), c, plugin)
    assert got["node-b"] > got["node-a"]
    assert spread_scores(hollow.pod("lone"), c, plugin) is None


# ----------------------------------------------------------- inter-pod affinity

def term(parent, key="region", op="In", values=("securityscan",), label="security", namespaces=(), ns_selector=None):
    t = parent.add(topology_key=key)
    t.label_selector.match_expressions.add(key=label, operator=op, values=list(values))
    t.namespaces.extend(namespaces)
    if ns_selector is not None:
        t.namespace_selector.match_labels.update(ns_selector)
    return t


def affinity(p, **kw):
    term(p.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution, **kw)
    return p


def anti(p, **kw):
    term(p.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution, **kw)
    return p


SEC = {"security": "securityscan"}
NODE1 = {"node1": {"region": "r1", "zone": "z11", "kubernetes.io/hostname": "node1"}}


def test_no_required_pod_affinity_fits_a_node_with_no_existing_pods():
    """TestRequiredAffinitySingleNode "A pod that has no required pod affinity scheduling rules can
    schedule onto a node with no existing pods"."""
    assert verdicts(InterPodAffinity(), hollow.pod("p"), cluster(NODE1)) == {"node1": ""}


def test_affinity_in_operator_matches_the_existing_pod():
    """TestRequiredAffinitySingleNode "satisfies with requiredDuringSchedulingIgnoredDuringExecution in
    PodAffinity using In operator that matches the existing pod" and "Does not satisfy the PodAffinity
    with labelSelector because of diff Namespace"."""
    c = cluster(NODE1, [("p1", "node1", SEC)])
    assert verdicts(InterPodAffinity(), affinity(hollow.pod("p")), c) == {"node1": ""}
    other_ns = affinity(hollow.pod("p"), namespaces=["DiffNameSpace"])
    assert verdicts(InterPodAffinity(), other_ns, c) == {"node1": ERR_AFFINITY}


def test_affinity_unmatching_selector_and_pod_matching_its_own_labels():
    """TestRequiredAffinitySingleNode "Doesn't satisfy the PodAffinity because of unmatching
    labelSelector with the existing pod" and "pod matches its own Label in PodAffinity and that
    matches the existing pod Labels" (the first pod of a co-located set may go anywhere)."""
    c = cluster(NODE1, [("p1", "node1", {"security": "other"})])
    assert verdicts(InterPodAffinity(), affinity(hollow.pod("p")), c) == {"node1": ERR_AFFINITY}
    first = affinity(hollow.pod("p", labels=SEC))
    assert verdicts(InterPodAffinity(), first, cluster(NODE1)) == {"node1": ""}


def test_anti_affinity_and_existing_pods_anti_affinity_symmetry():
    """TestRequiredAffinitySingleNode "satisfies the PodAntiAffinity with existing pod but doesn't
    satisfy PodAntiAffinity symmetry with incoming pod" and "verify that PodAntiAffinity from existing
    pod is respected when pod has no AntiAffinity constraints"."""
    c = cluster(NODE1)
    c.add_pod(anti(existing("p1", "node1", SEC), key="zone", values=["securityscan"]))
    assert verdicts(InterPodAffinity(), hollow.pod("p", labels=SEC), c) == {"node1": ERR_EXISTING_ANTI_AFFINITY}
    mine = anti(hollow.pod("p", labels={"security": "x"}), key="zone")
    assert verdicts(InterPodAffinity(), mine, c) == {"node1": ERR_ANTI_AFFINITY}
    assert verdicts(InterPodAffinity(), hollow.pod("q", labels={"security": "x"}), c) == {"node1": ""}


def test_namespace_selector_matches_namespace_labels():
    """TestRequiredAffinitySingleNode "affinity with matching namespace selector" and "affinity with
    non-matching namespace selector"."""
    c = cluster(NODE1, [("p1", "node1", SEC, "subteam")])
    c.namespace_labels.update({"subteam": {"team": "team1"}, "default": {}})
    ok = affinity(hollow.pod("p"), ns_selector={"team": "team1"})
    assert verdicts(InterPodAffinity(), ok, c) == {"node1": ""}
    no = affinity(hollow.pod("p"), ns_selector={"team": "team2"})
    assert verdicts(InterPodAffinity(), no, c) == {"node1": ERR_AFFINITY}


def test_anti_affinity_over_a_topology_domain_across_nodes():
    """TestRequiredAffinityMultipleNodes "NodeA and nodeB have same topologyKey and label value. NodeA
    has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto
    nodeA and nodeB." and its affinity twin "A pod can be scheduled onto all the nodes that have the
    same topology key & label value with one of them has an existing pod that matches the affinity
    rules"."""
    nodes = {"nodeA": {"zone": "az1", "hostname": "h1"}, "nodeB": {"zone": "az1", "hostname": "h2"},
             "nodeC": {"zone": "az2", "hostname": "h3"}}
    c = cluster(nodes, [("p1", "nodeA", {"foo": "bar"})])
    a = anti(hollow.pod("p"), key="zone", label="foo", values=["bar"])
    assert verdicts(InterPodAffinity(), a, c) == {"nodeA": ERR_ANTI_AFFINITY, "nodeB": ERR_ANTI_AFFINITY,
                                                  "nodeC": ""}
    f = affinity(hollow.pod("p"), key="zone", label="foo", values=["bar"])
    assert fits(verdicts(InterPodAffinity(), f, c)) == {"nodeA", "nodeB"}
    missing_key = affinity(hollow.pod("p"), key="rack", label="foo", values=["bar"])
    assert fits(verdicts(InterPodAffinity(), missing_key, c)) == set()


def test_preferred_affinity_and_anti_affinity_scores():
    """TestPreferredAffinity "Affinity: pod that matches topology key & pods in nodes will get high
    score comparing to others which doesn't match either pods in nodes or in topology key" and
    "Anti Affinity: pod that doesnot match existing pods in node will get high score"."""
    nodes = {"node1": {"region": "China"}, "node2": {"region": "India"}, "node3": {"az": "az1"}}
    c = cluster(nodes, [("p1", "node1", SEC)])
    p = hollow.pod("p")
    w = p.spec.affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution.add(weight=5)
    term_ = w.pod_affinity_term
    term_.topology_key = "region"
    term_.label_selector.match_labels.update(SEC)
    plugin, snap, state, pi = InterPodAffinity(), Snapshot(c), CycleState(), pod_info(p)
    idx = np.array([c.index[n] for n in nodes])
    plugin.pre_score(state, pi, snap, idx)
    assert list(plugin.score(state, pi, snap, idx)) == [100, 0, 0]
    q = hollow.pod("q")
    w = q.spec.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution.add(weight=5)
    w.pod_affinity_term.topology_key = "region"
    w.pod_affinity_term.label_selector.match_labels.update(SEC)
    state, qi = CycleState(), pod_info(q)
    plugin.pre_score(state, qi, snap, idx)
    assert list(plugin.score(state, qi, snap, idx)) == [0, 100, 100]


def test_pod_cannot_be_scheduled_as_all_nodes_dont_have_label_rack():
    """TestSingleConstraint "pod cannot be scheduled as all nodes don't have label 'rack'"."""
    v = verdicts(PodTopologySpread(), spread(hollow.pod("p", labels=FOO), "rack"), cluster(ZONES))
    assert set(v.values()) == {ERR_MISSING_LABEL}
