"""FailedScheduling message aggregation and the decision record."""
from scheduler import decision, hollow
from scheduler.algorithm import Algorithm, num_feasible_nodes_to_find
from scheduler.cache import NodeCache
from scheduler.framework import aggregate_message, pod_info


def test_aggregate_sorted_like_go_sort_strings():
    msg = aggregate_message(3, {"Insufficient cpu": 2,
                                "node(s) had untolerated taint {node.kubernetes.io/unreachable: }": 1})
    assert msg == ("0/3 nodes are available: 1 node(s) had untolerated taint "
                   "{node.kubernetes.io/unreachable: }, 2 Insufficient cpu.")
    # string order, not numeric: "10 ..." sorts before "9 ..."
    assert aggregate_message(19, {"Insufficient memory": 9, "Insufficient cpu": 10}) == \
        "0/19 nodes are available: 10 Insufficient cpu, 9 Insufficient memory."


def test_no_nodes():
    assert aggregate_message(0, {}) == "0/0 nodes are available: no nodes available to schedule pods."


def cluster():
    c = NodeCache()
    c.set_node(hollow.node("small1", cpu="1"))
    c.set_node(hollow.node("small2", cpu="1", memory="100Mi"))
    c.set_node(hollow.node("tainted", taints=[("dedicated", "gpu", "NoSchedule")]))
    c.set_node(hollow.node("lost", ready="Unknown"))
    c.set_node(hollow.node("cordoned", unschedulable=True))
    c.set_node(hollow.node("zoned", labels={"zone": "b"}, cpu="1"))
    return c


def test_end_to_end_message_counts_every_reason_of_first_failing_plugin():
    c = cluster()
    p = pod_info(hollow.pod("p", cpu="2", memory="1Gi"))
    r = Algorithm(c).schedule(p)
    assert r.node is None
    assert r.message() == (
        "0/6 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: gpu}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "1 node(s) were unschedulable, 3 Insufficient cpu.")
    sel = pod_info(hollow.pod("q", cpu="2", node_selector={"zone": "a"}))
    assert Algorithm(c).schedule(sel).message() == (
        "0/6 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "1 node(s) were unschedulable, 3 node(s) didn't match Pod's node affinity/selector.")


def test_decision_record_is_bounded_and_names_examples():
    c = NodeCache()
    for i in range(300):
        c.set_node(hollow.node(f"n{i:03}", cpu="1" if i < 200 else "8", taints=[("t", str(i % 7), "NoSchedule")] if i % 10 == 0 else None))
    r = Algorithm(c).schedule(pod_info(hollow.pod("p", cpu="2", owner_uid="rs")))
    assert r.node is not None
    rec = decision.decode(decision.encode(r, {"LeastAllocated": 1}))
    assert rec["node"] == r.node and rec["nodes"] == 300
    assert rec["feasible"] == 90 and rec["scored"] == 90
    assert rec["filtered"][0] == {"reason": "Insufficient cpu", "count": 180, "nodes": ["n001", "n002", "n003"]}
    assert len(rec["filtered"]) <= 5
    assert sum(len(f["nodes"]) for f in rec["filtered"]) + len(rec["scores"]) <= 20
    assert rec["scores"][0]["node"] == r.node
    assert set(rec["scores"][0]["plugins"]) == {"LeastAllocated", "BalancedAllocation", "NodeAffinity", "OwnerSpread",
                                                "PodTopologySpread", "InterPodAffinity"}


def test_percentage_of_nodes_to_score():
    assert num_feasible_nodes_to_find(50, 0) == 50
    assert num_feasible_nodes_to_find(1000, 0) == 420          # 50 - 1000/125 = 42 %
    assert num_feasible_nodes_to_find(5000, 0) == 500          # 10 %
    assert num_feasible_nodes_to_find(100000, 0) == 5000       # floor of 5 %
    assert num_feasible_nodes_to_find(1000, 100) == 1000
    assert num_feasible_nodes_to_find(150, 10) == 100          # at least 100


def test_scoring_sample_rotates_over_nodes():
    c = NodeCache()
    for i in range(1000):
        c.set_node(hollow.node(f"n{i}"))
    algo = Algorithm(c)
    seen = set()
    for i in range(3):
        pi = pod_info(hollow.pod(f"p{i}"))
        r = algo.schedule(pi)
        assert r.scored == 420
        c.assume(pi, r.node)
        seen.add(r.node)
    assert len(seen) == 3


def test_node_status_names_the_first_failing_filter():
    c = cluster()
    algo = Algorithm(c)
    p = pod_info(hollow.pod("p", cpu="2", memory="1Gi"))
    assert algo.node_status(p, "tainted").plugin == "TaintToleration"
    assert algo.node_status(p, "cordoned").reasons == ("node(s) were unschedulable",)
    assert algo.node_status(p, "small2").reasons == ("Insufficient cpu", "Insufficient memory")
    assert algo.node_status(pod_info(hollow.pod("q")), "small1").ok
