"""NodeCache bookkeeping: assume/forget/confirm, orphans, node removal, growth."""
from scheduler import hollow
from scheduler.cache import NodeCache
from scheduler.framework import pod_info


def test_assume_confirm_remove():
    c = NodeCache(capacity=1)
    c.set_node(hollow.node("a"))
    pi = pod_info(hollow.pod("p", cpu="500m", memory="1Gi", owner_uid="rs"))
    c.assume(pi, "a")
    assert c.node_summary("a")["cpu"] == (500, 4000) and c.is_assumed(pi.uid)
    bound = hollow.pod("p", cpu="500m", memory="1Gi", owner_uid="rs", node_name="a")
    c.add_pod(bound)                       # confirmation through the watch
    assert not c.is_assumed(pi.uid)
    c.forget(pi.uid)                       # no-op once confirmed
    assert c.node_summary("a")["pods"] == (1, 110)
    assert c.owner_column("rs")[0] == 1
    c.remove_pod(pi.uid)
    assert c.node_summary("a") == {"cpu": (0, 4000), "memory": (0, 8 << 30), "pods": (0, 110)}
    assert c.owner_column("rs") is None


def test_terminal_pods_release_resources():
    c = NodeCache()
    c.set_node(hollow.node("a"))
    p = hollow.pod("p", cpu="1", node_name="a")
    c.add_pod(p)
    p.status.phase = "Succeeded"
    c.add_pod(p)
    assert c.node_summary("a")["cpu"] == (0, 4000)


def test_pods_of_unknown_nodes_attach_when_node_appears_and_detach_on_removal():
    c = NodeCache()
    c.add_pod(hollow.pod("p", cpu="1", node_name="late"))
    c.set_node(hollow.node("late"))
    assert c.node_summary("late")["cpu"] == (1000, 4000)
    c.remove_node("late")
    assert "late" not in c.index and len(c) == 0
    c.set_node(hollow.node("other"))           # reuses the slot, starts clean
    assert c.node_summary("other")["cpu"] == (0, 4000)
    c.set_node(hollow.node("late"))
    assert c.node_summary("late")["cpu"] == (1000, 4000)


def test_growth_keeps_columns():
    c = NodeCache(capacity=2)
    for i in range(50):
        c.set_node(hollow.node(f"n{i}", labels={"zone": f"z{i % 3}"}))
        c.add_pod(hollow.pod(f"p{i}", cpu="1", owner_uid="rs", node_name=f"n{i}"))
    assert c.cap >= 50 and len(c) == 50
    assert c.label_values["zone"][c.label_cols["zone"][49]] == "z1"
    assert int(c.owner_column("rs")[:c.n].sum()) == 50
    assert int(c.req_cpu[:c.n].sum()) == 50_000


def test_generation_changes_only_with_static_features():
    c = NodeCache()
    c.set_node(hollow.node("a"))
    g = c.generation
    c.set_node(hollow.node("a", cpu="8"))          # allocatable only
    assert c.generation == g and c.node_summary("a")["cpu"] == (0, 8000)
    c.set_node(hollow.node("a", cpu="8", labels={"x": "y"}))
    assert c.generation > g


def test_snapshot_is_a_live_read_only_view_of_the_cache():
    from scheduler.snapshot import Resources, Snapshot
    c = NodeCache(capacity=1)
    snap = Snapshot(c)
    c.set_node(hollow.node("a", cpu="2", labels={"zone": "z1"}))
    c.set_node(hollow.node("b", memory="1Gi", taints=[("k", "v", "NoSchedule")]))
    assert (len(snap), snap.num_slots, snap.names) == (2, 2, ["a", "b"])
    pi = pod_info(hollow.pod("p", cpu="500m", owner_uid="rs"))
    c.assume(pi, "a")
    info = snap.node_info("a")
    assert (info.name, info.slot, info.labels["zone"]) == ("a", 0, "z1")
    assert info.allocatable == Resources(2000, 8 << 30, 110) and info.requested == Resources(500, 0, 1)
    assert snap.free().cpu.tolist() == [1500, 4000]
    assert snap.nonzero_requested().memory.tolist() == [200 << 20, 0]
    assert snap.inverse_allocatable().memory[1] == 1 / (1 << 30)
    assert snap.owner_counts("rs").tolist() == [1, 0] and snap.owner_counts("other") is None
    assert snap.label_column("zone").tolist() == [0, -1] and snap.label_ids("zone") == {"z1": 0}
    assert snap.label_values("zone") == ["z1"] and snap.label_column("nope").tolist() == [-1, -1]
    assert snap.taint_groups[snap.taint_group()[1]] == (("k", "v", "NoSchedule"),)
    g = snap.generation
    c.remove_node("b")
    assert snap.generation > g and snap.valid().tolist() == [True, False] and snap.slot("b") is None
