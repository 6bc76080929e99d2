"""DefaultPreemption (PostFilter) against Kubernetes' cases from
defaultpreemption/default_preemption_test.go: TestSelectCandidate / TestDryRunPreemption
("a pod that fits on both nodes when lower priority pods are preempted", "a pod that
would fit on the nodes, but other pods running are higher priority, no preemption would
happen", "medium priority pod is preempted, but lower priority one stays as it is
small", "mixed priority pods are preempted, pick later StartTime one", "preemption to
resolve pod topology spread filter failure"), TestPodEligibleToPreemptOthers ("Pod with
'PreemptNever' preemption policy", "victim Pods terminating, feature PodDisruptionConditions
is enabled") and TestPickOneNodeForPreemption's ordering criteria.
"""
from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from scheduler import hollow
from scheduler.algorithm import Algorithm
from scheduler.cache import NodeCache
from scheduler.framework import pod_info
from scheduler.plugins.preemption import NEVER, NOT_HELPFUL, NO_VICTIMS, TERMINATING, Candidate, pick_one

LOW, MID, HIGH = 10, 100, 1000


def running(name, node, prio, cpu="1", start=100, labels=None):
    p = hollow.pod(name, node_name=node, cpu=cpu, labels=labels)
    p.spec.priority = prio
    p.status.start_time.CopyFrom(Timestamp(seconds=start))
    return p


def pending(name="preemptor", prio=HIGH, cpu="2", labels=None, policy=None):
    p = hollow.pod(name, cpu=cpu, labels=labels)
    p.spec.priority = prio
    if policy:
        p.spec.preemption_policy = policy
    return p


class FakeEvictor:
    def __init__(self):
        self.calls = []
        self.nominations = {}

    def nominated_node(self, pod):
        return pod.pod.status.nominated_node_name or self.nominations.get(pod.uid, "")

    def nominate(self, pod, node, victims):
        self.calls.append((pod.name, node, sorted(v.pod.metadata.name for v in victims)))


def preempt(cache, pod, evictor=None):
    algo = Algorithm(cache, evictor=evictor)
    pi = pod_info(pod)
    result = algo.schedule(pi)
    assert result.node is None, "the pod must not fit before preemption"
    return algo.post_filter(result, pi)


def two_nodes(cpu="2"):
    c = NodeCache(capacity=2)
    for n in ("node1", "node2"):
        c.set_node(hollow.node(n, cpu=cpu))
    return c


def victims(out):
    return sorted(r.pod.metadata.name for r in out.victims)


def test_a_pod_that_fits_on_both_nodes_when_lower_priority_pods_are_preempted():
    c = two_nodes()
    c.add_pod(running("p1", "node1", MID, cpu="2"))
    c.add_pod(running("p2", "node2", LOW, cpu="2"))
    ev = FakeEvictor()
    out = preempt(c, pending(), ev)
    assert (out.nominated, victims(out)) == ("node2", ["p2"])       # the lower highest-priority victim
    assert ev.calls == [("preemptor", "node2", ["p2"])]
    assert out.record()["victims"] == ["default/p2 (priority 10)"]


def test_no_preemption_when_the_running_pods_have_higher_priority():
    c = two_nodes()
    c.add_pod(running("p1", "node1", HIGH, cpu="2"))
    c.add_pod(running("p2", "node2", HIGH, cpu="2"))
    out = preempt(c, pending(prio=MID))
    assert out.nominated is None and out.victims == []
    assert out.message == f"0/2 nodes are available: 2 {NO_VICTIMS}."


def test_medium_priority_pod_is_preempted_but_lower_priority_one_stays_as_it_is_small():
    c = NodeCache(capacity=2)
    c.set_node(hollow.node("node1", cpu="3"))
    c.add_pod(running("small-low", "node1", LOW, cpu="500m"))
    c.add_pod(running("big-mid", "node1", MID, cpu="2500m"))
    out = preempt(c, pending(cpu="2"))
    assert (out.nominated, victims(out)) == ("node1", ["big-mid"])


def test_mixed_priority_pods_are_preempted_pick_later_start_time_one():
    c = two_nodes(cpu="3")
    c.add_pod(running("p1.1", "node1", MID, start=100))
    c.add_pod(running("p1.2", "node1", LOW, start=100))
    c.add_pod(running("p2.1", "node2", MID, start=200))     # started later: preferred victim
    c.add_pod(running("p2.2", "node2", LOW, start=200))
    out = preempt(c, pending(cpu="3"))
    assert (out.nominated, victims(out)) == ("node2", ["p2.1", "p2.2"])


def test_preemption_to_resolve_pod_topology_spread_filter_failure():
    c = NodeCache(capacity=2)
    for n in ("node-a", "node-b"):
        c.set_node(hollow.node(n, cpu="2", labels={"node": n}))
    foo = {"foo": ""}
    c.add_pod(running("p-a1", "node-a", MID, cpu="500m", labels=foo))
    c.add_pod(running("p-a2", "node-a", MID, cpu="500m", labels=foo))
    c.add_pod(running("p-b1", "node-b", LOW, cpu="2", labels=foo))
    p = pending(cpu="1", labels=foo)
    t = p.spec.topology_spread_constraints.add(max_skew=1, topology_key="node", when_unsatisfiable="DoNotSchedule")
    t.label_selector.match_labels.update(foo)
    out = preempt(c, p)
    assert (out.nominated, victims(out)) == ("node-b", ["p-b1"])


def test_pod_with_preempt_never_policy_never_preempts():
    c = two_nodes()
    c.add_pod(running("p1", "node1", LOW, cpu="2"))
    c.add_pod(running("p2", "node2", LOW, cpu="2"))
    ev = FakeEvictor()
    out = preempt(c, pending(policy="Never"), ev)
    assert (out.nominated, out.message, ev.calls) == (None, NEVER, [])


def test_nominated_pod_waits_for_its_terminating_victims():
    c = two_nodes()
    victim = running("p1", "node1", LOW, cpu="2")
    victim.metadata.deletion_timestamp.CopyFrom(Timestamp(seconds=5))
    c.add_pod(victim)
    c.add_pod(running("p2", "node2", LOW, cpu="2"))
    p = pending()
    p.status.nominated_node_name = "node1"
    ev = FakeEvictor()
    out = preempt(c, p, ev)
    assert (out.nominated, out.message, ev.calls) == ("node1", TERMINATING, [("preemptor", "node1", [])])


def test_unresolvable_nodes_are_not_candidates():
    c = NodeCache(capacity=2)
    c.set_node(hollow.node("tainted", cpu="4", taints=[("dedicated", "x", "NoSchedule")]))
    c.set_node(hollow.node("full", cpu="2"))
    c.add_pod(running("hog", "tainted", LOW, cpu="4"))
    c.add_pod(running("other", "full", HIGH, cpu="2"))
    out = preempt(c, pending(prio=MID))
    assert out.nominated is None
    assert out.message == f"0/2 nodes are available: 1 {NO_VICTIMS}, 1 {NOT_HELPFUL}."


def test_reservation_keeps_lesser_pods_off_the_nominated_node():
    c = two_nodes()
    c.add_pod(running("p1", "node1", LOW, cpu="2"))
    c.add_pod(running("p2", "node2", HIGH, cpu="2"))
    pi = pod_info(pending())
    c.nominate(pi, "node1")
    assert not c.is_assumed(pi.uid)
    assert c.node_summary("node1")["cpu"][0] == 4000        # victim still terminating + reservation
    assert c.release_nomination(pi.uid) == "node1" and c.node_summary("node1")["cpu"][0] == 2000


def rec(name, prio, start):
    return type("Rec", (), {"pod": running(name, "n", prio, start=start), "uid": name})()


def test_pick_one_node_for_preemption_criteria():
    """TestPickOneNodeForPreemption: "machine with min highest priority pod is picked", "when highest
    priorities are the same, minimum sum of priorities is picked", "when highest priority and sum are
    the same, minimum number of pods is picked", "same priority, same number of victims, different
    start time for each node's pod" and fewest PDB violations first."""
    def cand(node, *victims, violations=0):
        return Candidate(node, 0, [rec(*v) for v in victims], violations)
    assert pick_one([cand("a", ("x", MID, 1)), cand("b", ("y", LOW, 1), ("z", LOW, 1))]).node == "b"
    assert pick_one([cand("a", ("x", MID, 1), ("w", MID, 1)), cand("b", ("y", MID, 1), ("z", LOW, 1))]).node == "b"
    assert pick_one([cand("a", ("x", MID, 1), ("w", 0, 1)), cand("b", ("y", MID, 1))]).node == "b"
    assert pick_one([cand("a", ("x", MID, 100)), cand("b", ("y", MID, 200))]).node == "b"
    assert pick_one([cand("a", ("x", HIGH, 1), violations=0), cand("b", ("y", LOW, 1), violations=1)]).node == "a"


def pdb(namespace, app, allowed, disrupted=()):
    """A PodDisruptionBudget-shaped message (the kind may not be served in this tree)."""
    from types import SimpleNamespace
    from machinery.pb import meta_pb2
    sel = meta_pb2.LabelSelector(match_labels={"app": app})
    return SimpleNamespace(metadata=SimpleNamespace(namespace=namespace),
                           spec=SimpleNamespace(selector=sel, HasField=lambda f: True),
                           status=SimpleNamespace(disruptions_allowed=allowed, disrupted_pods=set(disrupted)))


def test_pdb_violations_count_in_order_and_skip_already_disrupted_pods():
    """filterPodsWithPDBViolation, and TestSelectNodesForPreemption "pod with PDB violation" /
    "preemption with violation of the pdb with pod whose eviction was processed": the node
    whose victims break no budget wins."""
    from scheduler.plugins.preemption import pdb_violations
    victims = [rec(n, LOW, 1) for n in ("a", "b", "c")]
    for v in victims:
        v.pod.metadata.labels["app"] = "web"
    assert pdb_violations(victims, [pdb("default", "web", 1)]) == {"b", "c"}
    assert pdb_violations(victims, [pdb("default", "web", 1, disrupted=["a"])]) == {"c"}
    assert pdb_violations(victims, [pdb("other", "web", 0), pdb("default", "db", 0)]) == set()
    c = two_nodes()
    c.add_pod(running("guarded", "node1", LOW, cpu="2", labels={"app": "web"}))
    c.add_pod(running("free", "node2", MID, cpu="2"))
    algo = Algorithm(c, pdbs=lambda: [pdb("default", "web", 0)])
    pi = pod_info(pending())
    out = algo.post_filter(algo.schedule(pi), pi)
    assert (out.nominated, victims_of(out)) == ("node2", ["free"])


def victims_of(out):
    return sorted(r.pod.metadata.name for r in out.victims)
