"""The in-tree plugins and their registry (see scheduler/framework.py for
the interfaces, scheduler/config.py for the default profile that enables
them).

Filters, in the default profile's order (kube-scheduler's): NodeUnschedulable,
NodeName, TaintToleration, NodeAffinity, NodeResourcesFit, then
PodTopologySpread and InterPodAffinity (dynamic, each with a PreFilter),
VolumeBinding (also PreFilter and PreBind: the pod's claims); a node's
status is the first failing filter's, as in Kubernetes. PostFilter:
DefaultPreemption. Scores: LeastAllocated, BalancedAllocation, NodeAffinity
(preferred terms, with a PreScore), OwnerSpread, PodTopologySpread,
InterPodAffinity. Bind: DefaultBinder.

Names differ from kube-scheduler's where the plugin does: our LeastAllocated
is NodeResourcesFit's default scoring strategy there, BalancedAllocation is
NodeResourcesBalancedAllocation, OwnerSpread is the old SelectorSpread
(by node, by controller). Kubernetes' names are not accepted as aliases.
"""
from scheduler.plugins.affinity import NodeAffinity
from scheduler.plugins.basic import NodeName, NodeUnschedulable
from scheduler.plugins.bind import DefaultBinder
from scheduler.plugins.interpodaffinity import InterPodAffinity
from scheduler.plugins.preemption import DefaultPreemption
from scheduler.plugins.resources import BalancedAllocation, LeastAllocated, NodeResourcesFit
from scheduler.plugins.spread import OwnerSpread
from scheduler.plugins.taints import TaintToleration
from scheduler.plugins.topologyspread import PodTopologySpread
from scheduler.plugins.volumebinding import VolumeBinding
from scheduler.runtime import Registry

__all__ = ["NodeAffinity", "NodeName", "NodeUnschedulable", "DefaultBinder",
           "BalancedAllocation", "LeastAllocated", "NodeResourcesFit", "OwnerSpread",
           "TaintToleration", "PodTopologySpread", "InterPodAffinity", "DefaultPreemption", "VolumeBinding",
           "in_tree_registry"]

IN_TREE = (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
           LeastAllocated, BalancedAllocation, OwnerSpread, PodTopologySpread, InterPodAffinity, DefaultPreemption,
           VolumeBinding, DefaultBinder)


def in_tree_registry() -> Registry:
    """A new registry of the in-tree plugins (callers may register more)."""
    r = Registry()
    for cls in IN_TREE:
        r.register(cls)
    return r
