"""The framework runtime: registry, CycleState, extension points in order,
the state passed between them, bind plugins."""
import numpy as np
import pytest

from machinery import errors
from scheduler import decision, hollow
from scheduler.algorithm import Algorithm
from scheduler.cache import NodeCache
from scheduler.config import PluginRef, default_profile
from scheduler.cycle_state import CycleState, StateData
from scheduler.framework import (SKIP, SUCCESS, BindPlugin, Code, FilterPlugin, PreFilterPlugin, ScorePlugin,
                                 Status, points_of, pod_info, single_reason)
from scheduler.plugins import DefaultBinder, NodeAffinity, NodeResourcesFit, in_tree_registry
from scheduler.runtime import Registry


# ------------------------------------------------------------- CycleState

class Box(StateData):
    def __init__(self, items):
        self.items = items

    def clone(self):
        return Box(list(self.items))


def test_cycle_state_read_write_delete_clone():
    s = CycleState()
    assert s.read("k") is None and "k" not in s
    s.write("k", Box([1]))
    s.skip_score_plugins.add("X")
    c = s.clone()
    c.read("k").items.append(2)
    c.skip_score_plugins.add("Y")
    assert s.read("k").items == [1] and c.read("k").items == [1, 2]
    assert s.skip_score_plugins == {"X"} and c.skip_score_plugins == {"X", "Y"}
    s.delete("k")
    s.delete("k")                                 # deleting twice is fine
    assert s.read("k") is None and c.read("k") is not None


def test_state_data_default_clone_is_shallow():
    b = StateData()
    b.raw = [1]
    c = b.clone()
    assert c is not b and c.raw is b.raw


# --------------------------------------------------------------- Registry

def test_in_tree_registry_and_extension_points():
    r = in_tree_registry()
    assert r.names() == sorted(["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                                "NodeResourcesFit", "LeastAllocated", "BalancedAllocation", "OwnerSpread",
                                "PodTopologySpread", "InterPodAffinity", "DefaultPreemption", "VolumeBinding",
                                "DefaultBinder"])
    assert points_of(r["PodTopologySpread"]) == ("preFilter", "filter", "preScore", "score")
    assert points_of(r["DefaultPreemption"]) == ("postFilter",)
    assert points_of(r["NodeAffinity"]) == ("filter", "preScore", "score")
    assert points_of(r["NodeResourcesFit"]) == ("filter",)
    assert points_of(r["DefaultBinder"]) == ("bind",)
    assert "Nope" not in r


def test_registry_refuses_duplicates_and_unknown_removals():
    r = Registry()
    r.register(NodeAffinity)
    with pytest.raises(errors.ConfigError, match='a plugin named "NodeAffinity" already exists'):
        r.register(NodeAffinity)
    r.unregister("NodeAffinity")
    with pytest.raises(errors.ConfigError, match='no plugin named "NodeAffinity" exists'):
        r.unregister("NodeAffinity")


# ----------------------------------------------- plugins that use the state

class RequireLabel(PreFilterPlugin, FilterPlugin):
    """PreFilter reads the pod's `needs` label into the state; a dynamic
    Filter reads it back (or rejects everything with PreFilter)."""
    name = "RequireLabel"
    static = False

    def pre_filter(self, state, pod, snapshot):
        need = pod.pod.metadata.labels.get("needs", "")
        if need == "error":
            return Status(Code.ERROR, ("boom",))
        if need == "nothing":
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("pod asks for nothing",))
        state.write(self.name, Box([need]))
        return SUCCESS

    def filter(self, state, pod, snapshot):
        need = state.read(self.name).items[0]
        if not need:
            return single_reason(np.zeros(snapshot.num_slots, dtype=bool), Status())
        col, ids = snapshot.label_column(need), snapshot.label_ids(need)
        return single_reason(col < 0 if ids else np.ones(snapshot.num_slots, dtype=bool),
                             Status(Code.UNSCHEDULABLE, (f"node(s) lack label {need}",), self.name))


def profile_with(point_plugins: dict, extra=()):
    r = in_tree_registry()
    for cls in extra:
        r.register(cls)
    p = default_profile()
    for point, refs in point_plugins.items():
        p.plugins[point] = refs
    return p, r


def cluster():
    c = NodeCache()
    c.set_node(hollow.node("a", cpu="1", labels={"gpu": "yes"}))
    c.set_node(hollow.node("b", cpu="4"))
    return c


def test_pre_filter_state_reaches_a_dynamic_filter_listed_first():
    p, r = profile_with({"preFilter": [PluginRef("RequireLabel")],
                         "filter": [PluginRef("RequireLabel")] + default_profile().plugins["filter"]},
                        extra=[RequireLabel])
    algo = Algorithm(cluster(), p, registry=r)
    assert algo.schedule(pod_info(hollow.pod("p", labels={"needs": "gpu"}))).node == "a"
    res = algo.schedule(pod_info(hollow.pod("q", cpu="2", labels={"needs": "gpu"})))
    # b lacks the label (first failing filter), a lacks cpu
    assert res.message() == "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) lack label gpu."
    assert algo.node_status(pod_info(hollow.pod("q", cpu="2", labels={"needs": "gpu"})), "b").plugin == "RequireLabel"


def test_pre_filter_rejection_and_error():
    p, r = profile_with({"preFilter": [PluginRef("RequireLabel")]}, extra=[RequireLabel])
    algo = Algorithm(cluster(), p, registry=r)
    res = algo.schedule(pod_info(hollow.pod("p", labels={"needs": "nothing"})))
    assert res.node is None and res.message() == "0/2 nodes are available: pod asks for nothing."
    rec = decision.record(res, algo.weights)
    assert rec["filtered"] == [{"reason": "pod asks for nothing", "count": 2, "nodes": []}]
    err = algo.schedule(pod_info(hollow.pod("p", labels={"needs": "error"}))).error
    assert err.code == Code.ERROR and err.plugin == "RequireLabel" and err.message() == "boom"


class Constant(ScorePlugin):
    name = "Constant"

    def score(self, state, pod, snapshot, idx):
        return np.full(len(idx), 50.0)


def test_skipped_score_plugin_scores_zero_and_weights_follow_the_profile():
    p, r = profile_with({"score": [PluginRef("NodeAffinity", 2.0), PluginRef("Constant", 3.0)]}, extra=[Constant])
    algo = Algorithm(cluster(), p, registry=r)
    res = algo.schedule(pod_info(hollow.pod("p")))          # no preferences: NodeAffinity's PreScore skips
    assert algo.weights == {"NodeAffinity": 2.0, "Constant": 3.0}
    assert res.top[0][1:] == (150.0, {"NodeAffinity": 0.0, "Constant": 50.0})
    # no constraints, no pod affinity anywhere: their PreScores skip too
    assert res.state.skip_score_plugins == {"NodeAffinity", "PodTopologySpread", "InterPodAffinity"}


class Recorder(BindPlugin):
    name = "Recorder"
    ARGS = frozenset({"skip"})

    def __init__(self, skip):
        self.skip, self.seen = skip, []

    @classmethod
    def new(cls, args, handle):
        return cls(skip=args.get("skip", False))

    def bind(self, state, pod, node, annotations, ctx):
        self.seen.append((pod.name, node))
        return SKIP if self.skip else SUCCESS


class FakeBinder:
    def __init__(self):
        self.items = []

    def submit(self, item):
        self.items.append(item)


def test_bind_plugins_in_order_until_one_does_not_skip():
    p, r = profile_with({"bind": [PluginRef("Recorder"), PluginRef("DefaultBinder")]}, extra=[Recorder])
    p.plugin_config["Recorder"] = {"skip": True}
    binder = FakeBinder()
    algo = Algorithm(cluster(), p, registry=r, binder=binder)
    pi = pod_info(hollow.pod("p"))
    res = algo.schedule(pi)
    assert algo.bind(res, pi, {"k": "v"}, "ctx").ok
    rec = algo.framework.binders[0]
    assert rec.seen == [("p", res.node)] and isinstance(algo.framework.binders[1], DefaultBinder)
    assert [(i.name, i.node, i.annotations, i.ctx) for i in binder.items] == [("p", res.node, {"k": "v"}, "ctx")]
    p.plugins["bind"] = [PluginRef("Recorder")]
    only_skip = Algorithm(cluster(), p, registry=r)
    st = only_skip.bind(only_skip.schedule(pi), pi, {}, None)
    assert st.code == Code.ERROR and st.message() == "no bind plugin bound the pod"


def test_framework_refuses_a_plugin_at_a_point_it_does_not_implement():
    p, r = profile_with({"score": [PluginRef("NodeResourcesFit", 1.0)]})
    with pytest.raises(errors.ConfigError, match='plugin "NodeResourcesFit" does not extend the score'):
        Algorithm(cluster(), p, registry=r)
    p, r = profile_with({"filter": [PluginRef("Missing")]})
    with pytest.raises(errors.ConfigError, match='plugin "Missing" is not registered'):
        Algorithm(cluster(), p, registry=r)


def test_one_instance_per_plugin_across_points():
    algo = Algorithm(cluster())
    fw = algo.framework
    affinity = next(f for f in fw.filters if f.name == "NodeAffinity")
    assert fw.pre_scores[0] is affinity and any(s is affinity for s, _ in fw.scorers)
    spread = next(f for f in fw.filters if f.name == "PodTopologySpread")
    assert spread in fw.pre_filters and spread in fw.pre_scores
    assert [f.name for f in fw.dynamic_filters] == [NodeResourcesFit.name, "PodTopologySpread", "InterPodAffinity",
                                                    "VolumeBinding"]


def test_weight_zero_skips_the_score_but_keeps_it_in_the_record_weights():
    algo = Algorithm(cluster(), default_profile().with_weights({"LeastAllocated": 0.0}))
    res = algo.schedule(pod_info(hollow.pod("p")))
    assert algo.weights["LeastAllocated"] == 0.0 and "LeastAllocated" not in res.top[0][2]
    assert set(res.top[0][2]) == {"BalancedAllocation", "NodeAffinity", "OwnerSpread", "PodTopologySpread",
                                  "InterPodAffinity"}
