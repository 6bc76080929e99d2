"""kctl-scheduler: binds pending pods to nodes, after kube-scheduler.

Map of the package:

* framework.py — Status / FilterResult / PodInfo, plugin interfaces, the
  "0/N nodes are available: ..." message, Config and score Weights.
* cache.py — NodeCache: nodes as rows of numpy arrays (allocatable,
  requested, free), taint groups, label columns, assumed pods.
* plugins/ — NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
  NodeResourcesFit (filters); LeastAllocated, BalancedAllocation,
  NodeAffinity (preferred), OwnerSpread (scores). All vectorised.
* algorithm.py — one decision: filter all nodes, score a rotating sample
  (percentageOfNodesToScore), pick the best.
* queue.py — active / backoff (1 s doubling to 10 s) / unschedulable.
* binder.py — pipelined BindBatch (≤ 128 per batch).
* scheduler.py — informers, handlers, the scheduling loop, bind results,
  unschedulable bookkeeping (status, event, decision annotation).
* decision.py — the `scheduler.kctl.io/decision` annotation (format there).
* events.py, metrics.py, main.py (flags, leader election), hollow.py
  (hollow nodes and pods for tests and bench/scheduler.py).
"""
