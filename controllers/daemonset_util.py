"""The DaemonSet controller's pure decisions (Kubernetes'
pkg/controller/daemon: daemon_controller.go, update.go, util/daemonset_util.go),
apart from the I/O in controllers/daemonset.py.

* `new_pod(ds, node, hash)`: the template with the automatic tolerations every
  daemon pod gets (not-ready and unreachable NoExecute; disk-, memory-,
  pid-pressure and unschedulable NoSchedule; network-unavailable for
  hostNetwork), the controller-revision-hash label (the hash alone decides
  whether a pod is up to date), and a required node affinity on `metadata.name` for the target
  node, so the default scheduler places it (Kubernetes >= 1.12);
* `should_run(node, ds)`: (shouldRun, shouldContinueRunning) from nodeName,
  nodeSelector/affinity and taints (an untolerated NoExecute taint ends a
  running pod, NoSchedule only stops a new one);
* revisions: the ControllerRevision data is `{"spec": {"template": ...,
  "$patch": "replace"}}`, hashed with FNV-32a (+ collisionCount) and
  SafeEncodeString like HashControllerRevision;
* `manage_plan`, `rolling_plan`, `status_counts`: what to create and delete
  per node, the RollingUpdate steps without and with maxSurge, and the
  status numbers.
"""
from __future__ import annotations

import json
import math

from google.protobuf import json_format, struct_pb2

from machinery import codec, kinds, nodeaffinity, workloads

from controllers import podutil
from controllers.deployment_util import fnv32a, safe_encode

DAEMON_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")


def add_daemon_tolerations(spec) -> None:
    """AddOrUpdateDaemonPodTolerations: replaces any toleration of the same key and effect."""
    wanted = list(DAEMON_TOLERATIONS) + ([NETWORK_UNAVAILABLE] if spec.host_network else [])
    for key, effect in wanted:
        keep = [codec.copy(t) for t in spec.tolerations if not (t.key == key and t.effect == effect)]
        del spec.tolerations[:]
        spec.tolerations.extend(keep)
        spec.tolerations.add(key=key, operator="Exists", effect=effect)


def pin_to_node(spec, node_name: str) -> None:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: one required term `metadata.name In [node]`."""
    req = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    del req.node_selector_terms[:]
    req.node_selector_terms.add().match_fields.add(key="metadata.name", operator="In", values=[node_name])


def target_node(pod) -> str:
    """GetTargetNodeName: spec.nodeName, else the node of the metadata.name affinity term."""
    if pod.spec.node_name:
        return pod.spec.node_name
    req = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in req.node_selector_terms:
        for f in term.match_fields:
            if f.key == "metadata.name" and f.operator == "In" and len(f.values) == 1:
                return f.values[0]
    return ""


def template_pod_spec(ds):
    spec = codec.copy(ds.spec.template.spec)
    add_daemon_tolerations(spec)
    return spec


def new_pod(ds, node_name: str, hash_: str):
    pod = kinds.new("Pod")
    t, md = ds.spec.template, ds.metadata
    pod.metadata.generate_name, pod.metadata.namespace = f"{md.name}-", md.namespace
    pod.metadata.labels.update(t.metadata.labels)
    pod.metadata.labels[workloads.CONTROLLER_REVISION_HASH] = hash_
    pod.metadata.annotations.update(t.metadata.annotations)
    pod.metadata.owner_references.append(podutil.owner_ref_for(ds))
    pod.spec.CopyFrom(template_pod_spec(ds))
    pin_to_node(pod.spec, node_name)
    return pod


def should_run(node, ds, spec=None) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod (`spec`: template_pod_spec(ds), computed once per sync by callers)."""
    spec = spec if spec is not None else template_pod_spec(ds)
    if spec.node_name and spec.node_name != node.metadata.name:
        return False, False
    if not nodeaffinity.required_affinity_matches(spec, node):
        return False, False
    if nodeaffinity.untolerated_taint(node.spec.taints, spec.tolerations) is not None:
        no_execute = nodeaffinity.untolerated_taint(node.spec.taints, spec.tolerations, ("NoExecute",))
        return False, no_execute is None
    return True, True


# --------------------------------------------------------------- revisions

patch_of = workloads.daemonset_patch
template_from_revision = workloads.template_from_revision


def revision_hash(data: struct_pb2.Struct, collision_count: int = 0) -> str:
    """HashControllerRevision: FNV-32a of the data's JSON (+ the collision count), safe-encoded."""
    raw = json.dumps(json_format.MessageToDict(data), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        raw += str(collision_count).encode()
    return safe_encode(str(fnv32a(raw)))


def is_pod_updated(pod, hash_: str) -> bool:
    """IsPodUpdated without a template generation (kctl keeps no
    deprecated.daemonset.template.generation annotation): the hash decides."""
    return bool(hash_) and pod.metadata.labels.get(workloads.CONTROLLER_REVISION_HASH) == hash_


def by_age(pods) -> list:
    """podByCreationTimestampAndPhase: scheduled first, then oldest, then by name."""
    return sorted(pods, key=lambda p: (not p.spec.node_name, p.metadata.creation_timestamp.seconds,
                                       p.metadata.name))


# ------------------------------------------------------------------ manage

def allows_surge(ds) -> bool:
    ru = ds.spec.update_strategy.rolling_update
    return ds.spec.update_strategy.type == "RollingUpdate" and surge_value(ru.max_surge, 1) > 0


def surge_value(v, total: int) -> int:
    if v.WhichOneof("value") == "str_val":
        return math.ceil(int(v.str_val.rstrip("%")) * total / 100)
    return v.int_val


def manage_plan(ds, nodes, node_pods: dict, hash_: str, now: float, failed_ok=lambda node: True):
    """manage(): (node names needing a pod, pods to delete, failed pods found)."""
    create, delete, failed = [], [], []
    names = {n.metadata.name for n in nodes}
    spec = template_pod_spec(ds)
    for node in nodes:
        run, keep = should_run(node, ds, spec)
        pods = node_pods.get(node.metadata.name, [])
        if run and not pods:
            create.append(node.metadata.name)
        elif keep:
            live = []
            for p in pods:
                if podutil.is_terminating(p):
                    continue
                if p.status.phase == "Failed":
                    if failed_ok(node.metadata.name):
                        failed.append(p)
                        delete.append(p)
                elif p.status.phase == "Succeeded":
                    delete.append(p)
                else:
                    live.append(p)
            delete += _excess(ds, by_age(live), hash_, now)
        elif not keep:
            delete += [p for p in pods if not podutil.is_terminating(p)]
    for name, pods in node_pods.items():
        if name not in names:                       # the node is gone, or the pod never got one
            delete += [p for p in pods if not podutil.is_terminating(p)]
    return create, delete, failed


def _excess(ds, live, hash_: str, now: float) -> list:
    if len(live) <= 1:
        return []
    if not allows_surge(ds):
        return live[1:]
    out, newest, oldest = [], None, None
    for p in live:
        if p.metadata.labels.get(workloads.CONTROLLER_REVISION_HASH) == hash_:
            if newest is None:
                newest = p
                continue
        elif oldest is None:
            oldest = p
            continue
        out.append(p)
    if newest is not None and oldest is not None:
        if not podutil.is_pod_ready(oldest) or podutil.is_pod_available(newest, ds.spec.min_ready_seconds, now):
            out.append(oldest)
    return out


def find_updated(pods, hash_: str):
    """findUpdatedPodsOnNode: (new, old, ok) — ok False with more than one of either."""
    new = old = None
    for p in pods:
        if podutil.is_terminating(p):
            continue
        if is_pod_updated(p, hash_):
            if new is not None:
                return None, None, False
            new = p
        else:
            if old is not None:
                return None, None, False
            old = p
    return new, old, True


# ----------------------------------------------------------- rolling update

def desired_counts(ds, nodes) -> tuple[int, int, int]:
    """updatedDesiredNodeCounts: (maxSurge, maxUnavailable, desiredNumberScheduled), percentages
    rounded up; both 0 would stall, so maxUnavailable becomes 1."""
    spec = template_pod_spec(ds)
    desired = sum(1 for n in nodes if should_run(n, ds, spec)[0])
    ru = ds.spec.update_strategy.rolling_update
    surge, unavailable = surge_value(ru.max_surge, desired), surge_value(ru.max_unavailable, desired)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable, desired


def rolling_plan(ds, nodes, node_pods: dict, hash_: str, now: float):
    """rollingUpdate(): (old pods to delete, nodes to create a new pod on)."""
    surge, max_unavailable, desired = desired_counts(ds, nodes)
    mrs, spec = ds.spec.min_ready_seconds, template_pod_spec(ds)
    by_name = {n.metadata.name: n for n in nodes}
    available = lambda p: podutil.is_pod_available(p, mrs, now)  # noqa: E731
    if surge == 0:
        unavailable, replace, candidates = 0, [], []
        for _name, pods in sorted(node_pods.items()):
            new, old, ok = find_updated(pods, hash_)
            if not ok or (new is None) == (old is None):
                unavailable += 1                # excess pods, or nothing/both: manage() handles it
            elif new is not None:
                unavailable += 0 if available(new) else 1
            elif not available(old):
                replace.append(old)
                unavailable += 1
            elif unavailable < max_unavailable:
                candidates.append(old)
        room = min(max(0, max_unavailable - unavailable), len(candidates))
        return replace + candidates[:room], []
    delete, not_run, candidates, allowed = [], [], [], []
    surged = healthy = 0
    for name, pods in sorted(node_pods.items()):
        new, old, ok = find_updated(pods, hash_)
        if not ok:
            surged += 1
            continue
        speaker = old if old is not None else new
        if speaker is not None and available(speaker):
            healthy += 1
        node = by_name.get(name)
        runs = node is not None and should_run(node, ds, spec)[0]
        if old is None:
            continue
        if new is None and not available(old):
            (allowed.append(name) if runs else delete.append(old))
        elif new is None:
            if not runs:
                not_run.append(old)
            elif surged < surge:
                candidates.append(name)
        elif not available(new):
            surged += 1
        else:
            delete.append(old)
    spare = healthy - desired
    if spare > 0:
        delete += not_run[:spare]
    room = min(max(0, surge - surged), len(candidates))
    return delete, allowed + candidates[:room]


# ------------------------------------------------------------------ status

def status_counts(ds, nodes, node_pods: dict, hash_: str, now: float) -> dict:
    """updateDaemonSetStatus's numbers (the oldest pod of a node speaks for it)."""
    c = dict.fromkeys(("desired_number_scheduled", "current_number_scheduled", "number_misscheduled",
                       "number_ready", "number_available", "updated_number_scheduled"), 0)
    spec = template_pod_spec(ds)
    for node in nodes:
        run, _ = should_run(node, ds, spec)
        pods = node_pods.get(node.metadata.name, [])
        if not run:
            c["number_misscheduled"] += 1 if pods else 0
            continue
        c["desired_number_scheduled"] += 1
        if not pods:
            continue
        c["current_number_scheduled"] += 1
        pod = by_age(pods)[0]
        if podutil.is_pod_ready(pod):
            c["number_ready"] += 1
            c["number_available"] += 1 if podutil.is_pod_available(pod, ds.spec.min_ready_seconds, now) else 0
        c["updated_number_scheduled"] += 1 if is_pod_updated(pod, hash_) else 0
    c["number_unavailable"] = c["desired_number_scheduled"] - c["number_available"]
    return c
