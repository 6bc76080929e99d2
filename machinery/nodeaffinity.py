"""Does one pod fit one node by its nodeSelector, required node affinity and
tolerations? (Kubernetes' component-helpers/scheduling/corev1/nodeaffinity
and the taint helpers of pkg/apis/core/v1/helper.)

The scheduler evaluates these column-wise over thousands of nodes
(scheduler/plugins); controllers that reason about one node at a time —
the DaemonSet controller's "should this node run the daemon pod" — need the
same rules per node, which is what this module gives: nodeSelector AND the
required terms; terms ORed, a term's expressions ANDed, a term without any
requirement matches nothing; NotIn/DoesNotExist match a missing label;
Gt/Lt compare integers; matchFields supports metadata.name.
"""
from __future__ import annotations


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def requirement_matches(req, labels) -> bool:
    op, has = req.operator, req.key in labels
    value = labels.get(req.key)
    if op == "In":
        return has and value in req.values
    if op == "NotIn":
        return not has or value not in req.values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and len(req.values) == 1:
        a, b = _int(value), _int(req.values[0])
        return a is not None and b is not None and (a > b if op == "Gt" else a < b)
    return False


def term_matches(term, node) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False
    fields = {"metadata.name": node.metadata.name}
    return all(requirement_matches(r, node.metadata.labels) for r in term.match_expressions) and \
        all(r.key in fields and requirement_matches(r, fields) for r in term.match_fields)


def required_affinity_matches(spec, node) -> bool:
    """nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)."""
    labels = node.metadata.labels
    if any(labels.get(k) != v for k, v in spec.node_selector.items()):
        return False
    na = spec.affinity.node_affinity
    if not na.HasField("required_during_scheduling_ignored_during_execution"):
        return True
    terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
    return any(term_matches(t, node) for t in terms)


def tolerates(toleration, taint) -> bool:
    """Toleration.ToleratesTaint (taint: a Taint message)."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator in ("", "Equal"):
        return toleration.value == taint.value
    return toleration.operator == "Exists"


def untolerated_taint(taints, tolerations, effects=("NoSchedule", "NoExecute")):
    """FindMatchingUntoleratedTaint: the first taint with one of `effects` no toleration covers."""
    for taint in taints:
        if taint.effect in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None
