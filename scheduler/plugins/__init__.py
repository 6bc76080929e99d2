"""Filter and score plugins (see scheduler/framework.py for the interfaces).

Default order is kube-scheduler's: NodeUnschedulable, NodeName,
TaintToleration, NodeAffinity, then NodeResourcesFit; a node's status is the
first failing filter's, as in Kubernetes.
"""
from scheduler.plugins.affinity import NodeAffinity, NodeAffinityScore
from scheduler.plugins.basic import NodeName, NodeUnschedulable
from scheduler.plugins.resources import BalancedAllocation, LeastAllocated, NodeResourcesFit
from scheduler.plugins.spread import OwnerSpread
from scheduler.plugins.taints import TaintToleration

__all__ = ["NodeAffinity", "NodeAffinityScore", "NodeName", "NodeUnschedulable",
           "BalancedAllocation", "LeastAllocated", "NodeResourcesFit", "OwnerSpread",
           "TaintToleration", "static_filters"]


def static_filters():
    return [NodeUnschedulable(), NodeName(), TaintToleration(), NodeAffinity()]
