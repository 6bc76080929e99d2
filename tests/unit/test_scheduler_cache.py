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
