"""kctl-scheduler: binds pending pods to nodes, after kube-scheduler.

Map of the package:

* framework.py — Status / FilterResult / PodInfo, the plugin interfaces per
  extension point (PreFilter with AddPod/RemovePod, Filter, PostFilter,
  PreScore, Score, Bind), Handle, ShapeCache, the "0/N nodes are
  available: ..." message.
* cycle_state.py — CycleState: per-attempt data plugins share (read / write
  / clone), made fresh for every decision.
* snapshot.py — Snapshot / NodeInfo: the narrow, vectorised view of the
  nodes plugins read (per-slot arrays: resources, labels, taints, owners,
  pods matching a label query, per-domain sums).
* cache.py — NodeCache: nodes as rows of numpy arrays (allocatable,
  requested, free), taint groups, label columns, assumed pods, preemptors'
  reservations on their nominated nodes.
* podindex.py — pods per slot by (namespaces, label selectors) query, kept
  incrementally, and the existing pods' affinity terms, for spread and
  inter-pod affinity.
* plugins/ — NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
  NodeResourcesFit (filters); PodTopologySpread and InterPodAffinity
  (PreFilter + dynamic Filter + Score); DefaultPreemption (PostFilter);
  LeastAllocated, BalancedAllocation, NodeAffinity (preferred, with a
  PreScore), OwnerSpread (scores); DefaultBinder. All vectorised.
  `in_tree_registry()`.
* eviction.py — Evictor: preemption's side effects (reservation, graceful
  deletion of victims, Preempted events).
* config.py — profiles and their default; KubeSchedulerConfiguration
  loading and validation (`kctl-scheduler --config FILE`).
* runtime.py — Registry (name → plugin class/factory) and Framework (one
  profile's plugins per extension point, weights, run_* methods).
* algorithm.py — one decision for one profile: pre-filter, filter all
  nodes, score a rotating sample (percentageOfNodesToScore), pick the best;
  `post_filter()` when none fits.
* queue.py — active / backoff (1 s doubling to 10 s) / unschedulable.
* binder.py — pipelined BindBatch (≤ 128 per batch).
* scheduler.py — informers, handlers, the scheduling loop (one Algorithm
  per profile, chosen by spec.schedulerName), bind results, unschedulable
  bookkeeping (status, event, decision annotation).
* decision.py — the `scheduler.kctl.io/decision` annotation (format there).
* events.py, metrics.py, main.py (flags, --config, leader election),
  hollow.py (hollow nodes and pods for tests and bench/scheduler.py).
"""
