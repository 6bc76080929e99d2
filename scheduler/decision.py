"""The decision record: why the scheduler put a pod where it did (or nowhere).

Written as the pod annotation `scheduler.kctl.io/decision` — with the
binding (BindRequest.annotations) for scheduled pods, with an Update of the
pod's annotations for unschedulable ones. `kctl describe pod` prints it.

Format (compact JSON, keys always present, at most ~20 node names):

    {
      "v": 1,
      "time": "2026-11-23T01:40:00Z",   # when the decision was taken (UTC)
      "node": "node-7",                  # chosen node, or null when unschedulable
      "nodes": 5000,                     # nodes considered
      "feasible": 4100,                  # nodes that passed every filter
      "scored": 500,                     # feasible nodes scored (percentageOfNodesToScore)
      "filtered": [                      # filtered-out nodes by reason, most first (<= 5 reasons)
        {"reason": "Insufficient cpu", "count": 900, "nodes": ["node-1", "node-2", "node-3"]}
      ],
      "scores": [                        # best candidates by total, the chosen one first (<= 5)
        {"node": "node-7", "total": 287.5,
         "plugins": {"LeastAllocated": 90.0, "BalancedAllocation": 97.5,
                     "NodeAffinity": 0.0, "OwnerSpread": 100.0}}
      ],
      "weights": {"LeastAllocated": 1, ...}, # weight of each score plugin
      "preemption": {                    # only when DefaultPreemption ran (no node fitted)
        "nominated": "node-3",           # the node made room on, or null
        "message": "preempting 1 pod(s) on node node-3",   # or why not
        "victims": ["default/low-1 (priority 10)"]
      }
    }

Affinity, spread and priority show up like every other filter: the reasons
of PodTopologySpread ("node(s) didn't match pod topology spread
constraints") and InterPodAffinity ("node(s) didn't match pod anti-affinity
rules", ...) in "filtered", their scores in "scores", the preemption
outcome (victims and their priorities) in "preemption".
"count" is a number of nodes; a node failing several resource checks counts
under each reason (as in the FailedScheduling message). A PreFilter plugin's
rejection shows as the only reason, counting every node, with no names. "nodes" lists at most
3 example names per reason. Totals are sum(weight * plugin score), plugin
scores are 0-100.
"""
from __future__ import annotations

import json
import time

from scheduler.algorithm import MAX_REASONS_LISTED, ScheduleResult

ANNOTATION = "scheduler.kctl.io/decision"


def record(result: ScheduleResult, weights: dict[str, float], now: float | None = None) -> dict:
    reasons = sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_REASONS_LISTED]
    if result.pre_filter:
        reasons = [(result.pre_filter, result.num_nodes)]
    top = list(result.top)
    if result.node is not None:
        top.sort(key=lambda t: (t[0] != result.node, -t[1]))
    return {
        "v": 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now if now is not None else time.time())),
        "node": result.node,
        "nodes": result.num_nodes,
        "feasible": result.feasible,
        "scored": result.scored,
        "filtered": [{"reason": r, "count": n, "nodes": result.examples.get(r, [])} for r, n in reasons],
        "scores": [{"node": name, "total": total, "plugins": parts} for name, total, parts in top],
        "weights": weights,
        **({"preemption": result.preemption} if result.preemption else {}),
    }


def json_of(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"))


def encode(result: ScheduleResult, weights: dict[str, float], now: float | None = None) -> str:
    return json_of(record(result, weights, now))


def decode(text: str) -> dict:
    return json.loads(text)
