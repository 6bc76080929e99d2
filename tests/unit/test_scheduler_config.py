"""KubeSchedulerConfiguration profiles: merging into the default profile,
every refusal naming its field, and profiles changing decisions."""
import asyncio

import numpy as np
import pytest
import yaml

from machinery import errors
from machinery.fakeclient import FakeClient
from scheduler import hollow
from scheduler.algorithm import Algorithm
from scheduler.cache import NodeCache
from scheduler.config import Config, PluginRef, default_profile, load, parse
from scheduler.framework import FilterPlugin, ScorePlugin, pod_info
from scheduler.plugins import in_tree_registry
from scheduler.scheduler import Scheduler

HEAD = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"


def profiles(text, registry=None):
    return parse(yaml.safe_load(HEAD + text), registry or in_tree_registry())[1]


def names(refs):
    return [(r.name, r.weight) if r.weight else r.name for r in refs]


# ------------------------------------------------------------------ good

def test_no_profiles_is_the_default_profile():
    pct, profs = parse(yaml.safe_load(HEAD), in_tree_registry())
    assert pct == 0 and profs == [default_profile()]
    assert names(profs[0].plugins["score"]) == [("LeastAllocated", 1), ("BalancedAllocation", 1),
                                                ("NodeAffinity", 2), ("OwnerSpread", 2),
                                                ("PodTopologySpread", 2), ("InterPodAffinity", 2)]
    assert names(profs[0].plugins["postFilter"]) == ["DefaultPreemption"]


def test_enabled_default_is_replaced_in_place_and_weight_defaults_to_one():
    p, = profiles("""
profiles:
- plugins:
    score:
      enabled: [{name: NodeAffinity, weight: 5}, {name: LeastAllocated}]
""")
    assert p.scheduler_name == "default-scheduler"
    assert names(p.plugins["score"]) == [("LeastAllocated", 1), ("BalancedAllocation", 1),
                                         ("NodeAffinity", 5), ("OwnerSpread", 2),
                                         ("PodTopologySpread", 2), ("InterPodAffinity", 2)]
    assert p.plugins["filter"] == default_profile().plugins["filter"]


def test_disable_all_then_enable_and_per_profile_percentage():
    p, q = profiles("""
percentageOfNodesToScore: 20
profiles:
- schedulerName: a
  percentageOfNodesToScore: 70
  plugins:
    score: {disabled: [{name: "*"}], enabled: [{name: OwnerSpread, weight: 3}]}
    filter: {disabled: [{name: TaintToleration}]}
- schedulerName: b
""")
    assert (p.scheduler_name, p.percentage_of_nodes_to_score) == ("a", 70)
    assert names(p.plugins["score"]) == [("OwnerSpread", 3)]
    assert names(p.plugins["filter"]) == ["NodeUnschedulable", "NodeName", "NodeAffinity", "NodeResourcesFit",
                                          "PodTopologySpread", "InterPodAffinity", "VolumeBinding"]
    assert (q.scheduler_name, q.percentage_of_nodes_to_score) == ("b", None)
    assert Algorithm(NodeCache(), p, percentage_of_nodes_to_score=20).percentage == 70
    assert Algorithm(NodeCache(), q, percentage_of_nodes_to_score=20).percentage == 20


class Zone(FilterPlugin, ScorePlugin):
    """A test plugin at two points, with args."""
    name = "Zone"
    ARGS = frozenset({"zone"})

    def __init__(self, zone="z1"):
        self.zone = zone

    @classmethod
    def new(cls, args, handle):
        return cls(**args)

    def filter(self, state, pod, snapshot):
        raise AssertionError("not called in these tests")

    def score(self, state, pod, snapshot, idx):
        ids = snapshot.label_ids("zone")
        return np.where(snapshot.label_column("zone")[idx] == ids.get(self.zone, -2), 100.0, 0.0)


def zone_registry():
    r = in_tree_registry()
    r.register(Zone)
    return r


def test_multi_point_enables_everywhere_unless_a_point_says_otherwise():
    p, = profiles("""
profiles:
- plugins:
    multiPoint:
      enabled: [{name: Zone, weight: 4}]
      disabled: [{name: NodeAffinity}]
    filter:
      disabled: [{name: Zone}]
  pluginConfig:
  - {name: Zone, args: {zone: z2}}
""", zone_registry())
    assert "Zone" not in names(p.plugins["filter"]) and "NodeAffinity" not in names(p.plugins["filter"])
    assert names(p.plugins["score"])[-1] == ("Zone", 4) and "NodeAffinity" not in p.weights()
    assert names(p.plugins["preScore"]) == ["PodTopologySpread", "InterPodAffinity"]
    assert p.plugin_config == {"Zone": {"zone": "z2"}}


def test_plugin_config_args_reach_the_factory():
    c = NodeCache()
    c.set_node(hollow.node("a", labels={"zone": "z1"}))
    c.set_node(hollow.node("b", labels={"zone": "z2"}))
    prof = profiles("""
profiles:
- plugins:
    score: {disabled: [{name: "*"}], enabled: [{name: Zone}]}
  pluginConfig: [{name: Zone, args: {zone: z2}}]
""", zone_registry())[0]
    assert Algorithm(c, prof, registry=zone_registry()).schedule(pod_info(hollow.pod("p"))).node == "b"


def test_load_reads_a_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(HEAD + "percentageOfNodesToScore: 10\n")
    assert load(str(f), in_tree_registry()) == (10, [default_profile()])
    f.write_text("a: [")
    with pytest.raises(errors.ConfigError, match=f"scheduler config {f}: not YAML"):
        load(str(f), in_tree_registry())


# ------------------------------------------------------------------- bad

@pytest.mark.parametrize("text,problem", [
    ("profiles:\n- plugins:\n    score:\n      enabled: [{name: Foo}]\n",
     'profiles[0].plugins.score.enabled[0].name: Unsupported value: "Foo": supported values: "BalancedAllocation", '),
    ("profiles:\n- plugins:\n    filter:\n      disabled: [{name: NodeAfinity}]\n",
     'profiles[0].plugins.filter.disabled[0].name: Unsupported value: "NodeAfinity"'),
    ("profiles:\n- plugins:\n    filter:\n      enabled: [{name: LeastAllocated}]\n",
     'profiles[0].plugins.filter.enabled[0].name: Invalid value: "LeastAllocated": '
     "plugin does not extend the filter extension point"),
    ("profiles:\n- plugins:\n    filter:\n      enabled: [{name: NodeName, weight: 2}]\n",
     'unknown field "profiles[0].plugins.filter.enabled[0].weight"'),
    ("profiles:\n- plugins:\n    score:\n      enabled: [{name: OwnerSpread, weight: -1}]\n",
     "profiles[0].plugins.score.enabled[0].weight: Invalid value: -1: must be a non-negative integer"),
    ("profiles:\n- plugins:\n    score:\n      enabled: [{name: OwnerSpread}, {name: OwnerSpread}]\n",
     'profiles[0].plugins.score.enabled[1].name: Duplicate value: "OwnerSpread"'),
    ("profiles:\n- plugins:\n    permit:\n      enabled: [{name: DefaultPreemption}]\n",
     'unknown field "profiles[0].plugins.permit"'),
    ("profiles:\n- plugins:\n    postFilter:\n      enabled: [{name: NodeName}]\n",
     'profiles[0].plugins.postFilter.enabled[0].name: Invalid value: "NodeName": plugin does not extend '
     'the postFilter extension point'),
    ("profiles:\n- plugins:\n    bind:\n      disabled: [{name: DefaultBinder}]\n",
     "profiles[0].plugins.bind.enabled: Required value: at least one bind plugin is needed"),
    ("leaderElection: {leaderElect: true}\n", 'unknown field "leaderElection"'),
    ("profiles:\n- schedulerName: a\n- {}\n", "profiles[1].schedulerName: Required value"),
    ("profiles:\n- schedulerName: a\n- schedulerName: a\n", 'profiles[1].schedulerName: Duplicate value: "a"'),
    ("percentageOfNodesToScore: 150\n", "percentageOfNodesToScore: Invalid value: 150: not in valid range [0-100]"),
    ("profiles:\n- percentageOfNodesToScore: x\n",
     'profiles[0].percentageOfNodesToScore: Invalid value: "x": not in valid range [0-100]'),
    ("profiles:\n- pluginConfig: [{name: NodeAffinity, args: {addedAffinity: {}}}]\n",
     'unknown field "profiles[0].pluginConfig[0].args.addedAffinity"'),
    ("profiles:\n- pluginConfig: [{name: Nope}]\n",
     'profiles[0].pluginConfig[0].name: Unsupported value: "Nope"'),
    ("profiles: {a: 1}\n", 'profiles: Invalid value: {"a": 1}: must be a list'),
])
def test_bad_config_names_the_field(text, problem):
    with pytest.raises(errors.ConfigError) as exc:
        profiles(text)
    assert str(exc.value).startswith("invalid KubeSchedulerConfiguration: ")
    assert problem in str(exc.value)


def test_header_and_shape_problems_are_all_reported_at_once():
    with pytest.raises(errors.ConfigError) as exc:
        parse({"apiVersion": "kubescheduler.config.k8s.io/v1beta3", "kind": "Policy", "profiles": [{"x": 1}]},
              in_tree_registry(), source="f.yaml")
    msg = str(exc.value)
    assert msg.startswith('invalid KubeSchedulerConfiguration f.yaml: [apiVersion: Unsupported value: '
                          '"kubescheduler.config.k8s.io/v1beta3": supported values: "kubescheduler.config.k8s.io/v1", '
                          'kind: Unsupported value: "Policy"')
    assert 'unknown field "profiles[0].x"' in msg
    with pytest.raises(errors.ConfigError, match="the document must be an object"):
        parse(["a"], in_tree_registry())


# ------------------------------------------------ profiles change decisions

def preferring_cluster():
    c = NodeCache()
    c.set_node(hollow.node("a", labels={"zone": "z1"}))
    c.set_node(hollow.node("b", labels={"zone": "z2"}))
    c.add_pod(hollow.pod("busy", cpu="2", memory="2Gi", node_name="a"))
    return c


def preferring_pod(name="p", scheduler_name=""):
    return hollow.prefer(hollow.pod(name, scheduler_name=scheduler_name), 1, [("zone", "In", ["z1"])])


NO_AFFINITY_SCORE = "profiles:\n- plugins:\n    score:\n      disabled: [{name: NodeAffinity}]\n"


def test_disabling_a_score_plugin_changes_the_decision():
    c = preferring_cluster()
    assert Algorithm(c).schedule(pod_info(preferring_pod())).node == "a"       # preference beats load
    algo = Algorithm(c, profiles(NO_AFFINITY_SCORE)[0])
    r = algo.schedule(pod_info(preferring_pod()))
    assert r.node == "b" and "NodeAffinity" not in r.top[0][2] and "NodeAffinity" not in algo.weights


def test_disabling_a_filter_changes_the_decision():
    c = NodeCache()
    c.set_node(hollow.node("small", cpu="1"))
    big = pod_info(hollow.pod("big", cpu="2"))
    assert Algorithm(c).schedule(big).node is None
    no_fit = profiles("profiles:\n- plugins:\n    filter:\n      disabled: [{name: NodeResourcesFit}]\n")[0]
    assert Algorithm(c, no_fit).schedule(big).node == "small"


async def test_scheduler_serves_each_profile_by_scheduler_name():
    fake = FakeClient()
    two = profiles("profiles:\n- schedulerName: default-scheduler\n- schedulerName: spread-only\n"
                   "  plugins:\n    score:\n      disabled: [{name: NodeAffinity}]\n")
    s = Scheduler(fake, Config(profiles=two))
    assert s.names == {"default-scheduler", "spread-only", "", "kctl-scheduler"}
    task = asyncio.create_task(s.run())
    try:
        await fake.create(hollow.node("a", labels={"zone": "z1"}))
        await fake.create(hollow.node("b", labels={"zone": "z2"}))
        await fake.create(hollow.pod("busy", cpu="2", memory="2Gi", node_name="a"))
        for pod in (preferring_pod("dflt"), preferring_pod("other", "spread-only"),
                    preferring_pod("nobody", "someone-else")):
            await fake.create(pod)
        for _ in range(2000):
            got = {p.metadata.name: p.spec.node_name for p in fake.objects("Pod")}
            if got["dflt"] and got["other"]:
                break
            await asyncio.sleep(0.005)
        assert (got["dflt"], got["other"], got["nobody"]) == ("a", "b", "")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_without_a_default_profile_unnamed_pods_are_not_ours():
    s = Scheduler(FakeClient(), Config(profiles=profiles("profiles:\n- schedulerName: custom\n")))
    assert s.names == {"custom"}
    assert s.profiles["custom"].profile.plugins["score"][0] == PluginRef("LeastAllocated", 1.0)
