"""Table columns of every kind: one definition for `kctl get` and for the
apiserver's server-side printing (`Accept: application/json;as=Table;...`,
what kubectl asks for), so the two can never disagree.

Column sets and cell logic are ports of kubernetes/pkg/printers/internalversion
(printPod, printService, printNode, ...). A kind's `cells(obj, at)` gives
every column's cell; columns of priority 1 are the ones only `-o wide`
shows (kubectl's rule for a server Table: priority 0 always, others with
wide), so a kctl table and a kubectl one are cut from the same row.
The workload kinds' printers (Job, CronJob, DaemonSet, PodDisruptionBudget,
ControllerRevision) live in machinery/tables_workloads.py, and
HorizontalPodAutoscaler's in machinery/tables_autoscaling.py, the config and
storage kinds' (ConfigMap, Secret, ServiceAccount, PersistentVolume(Claim),
StorageClass, PriorityClass) in machinery/tables_storage.py; they, like the
other tables_* modules, are added at the end of this module.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Callable

from machinery.initstatus import init_status, is_sidecar, last_finish, ts_seconds  # noqa: F401 (re-exported)

NONE = "<none>"


# ----------------------------------------------------------------------- age

def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def now() -> float:
    return _dt.datetime.now(_dt.timezone.utc).timestamp()


def age(ts, at: float | None = None) -> str:
    """translateTimestampSince: `<unknown>` for an unset time."""
    t = ts_seconds(ts)
    if t is None:
        return "<unknown>"
    return human_duration((at if at is not None else now()) - t)


# ---------------------------------------------------------------- selectors

def format_labels(labels) -> str:
    if not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_selector(sel) -> str:
    """metav1.LabelSelector as a selector string (`app=web,tier in (a,b)`)."""
    if sel is None or (not sel.match_labels and not sel.match_expressions):
        return NONE
    parts = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    for e in sel.match_expressions:
        vals = ",".join(sorted(e.values))
        op = e.operator
        if op == "In":
            parts.append(f"{e.key} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{e.key} notin ({vals})")
        elif op == "Exists":
            parts.append(e.key)
        elif op == "DoesNotExist":
            parts.append(f"!{e.key}")
    return ",".join(parts)


# ---------------------------------------------------------------------- pods

def pod_status(pod, at: float | None = None) -> tuple[str, str, str]:
    """(READY, STATUS, RESTARTS) — kubectl's printPod (pkg/printers/internalversion/printers.go):
    sidecars (restartPolicy Always init containers) count in READY's total; while an init
    container has not finished the STATUS is Init:N/M or Init:<reason>."""
    st = pod.status
    reason = st.reason or st.phase
    total = len(pod.spec.containers) + sum(1 for c in pod.spec.init_containers if is_sidecar(c))
    reason, initializing, ready, restarts, last_restart, side_restarts, side_last = init_status(pod, reason)
    initialized = any(c.type == "Initialized" and c.status == "True" for c in st.conditions)
    if not initializing or initialized:
        restarts, last_restart = side_restarts, side_last
        has_running = False
        for cs in reversed(st.container_statuses):
            restarts += cs.restart_count
            last_restart = last_finish(cs, last_restart)
            state = cs.state
            if state.HasField("waiting") and state.waiting.reason:
                reason = state.waiting.reason
            elif state.HasField("terminated") and state.terminated.reason:
                reason = state.terminated.reason
            elif state.HasField("terminated"):
                t = state.terminated
                reason = f"Signal:{t.signal}" if t.signal else f"ExitCode:{t.exit_code}"
            elif cs.ready and state.HasField("running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.type == "Ready" and c.status == "True" for c in st.conditions)
            reason = "Running" if ready_cond else "NotReady"
    deleting = pod.metadata.HasField("deletion_timestamp")
    if deleting and st.reason == "NodeLost":
        reason = "Unknown"
    elif deleting and st.phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    restarts_s = str(restarts)
    if restarts and last_restart is not None:
        restarts_s = f"{restarts} ({human_duration((at if at is not None else now()) - last_restart)} ago)"
    return f"{ready}/{total}", reason, restarts_s


def _pod(p, wide, at):
    ready, status, restarts = pod_status(p, at)
    row = [p.metadata.name, ready, status, restarts, age(p.metadata.creation_timestamp, at)]
    if wide:
        ip = p.status.pod_ips[0].ip if p.status.pod_ips else p.status.pod_ip
        row += [ip or NONE, p.spec.node_name or NONE, p.status.nominated_node_name or NONE, NONE]
    return row


# ------------------------------------------------------------------ services

def port_string(ports) -> str:
    pieces = []
    for p in ports:
        proto = p.protocol or "TCP"
        pieces.append(f"{p.port}:{p.node_port}/{proto}" if p.node_port else f"{p.port}/{proto}")
    return ",".join(pieces)


def external_ip(svc) -> str:
    t = svc.spec.type or "ClusterIP"
    ext = list(svc.spec.external_ips)
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else NONE
    if t == "LoadBalancer":
        lb = [i.ip or i.hostname for i in svc.status.load_balancer.ingress if i.ip or i.hostname]
        if ext:
            return ",".join(lb + ext)
        return ",".join(lb) if lb else "<pending>"
    if t == "ExternalName":
        return svc.spec.external_name
    return "<unknown>"


def _service(s, wide, at):
    cip = s.spec.cluster_ips[0] if s.spec.cluster_ips else (s.spec.cluster_ip or NONE)
    row = [s.metadata.name, s.spec.type or "ClusterIP", cip, external_ip(s),
           port_string(s.spec.ports) or NONE, age(s.metadata.creation_timestamp, at)]
    if wide:
        row.append(format_labels(s.spec.selector))
    return row


# --------------------------------------------------------------- workloads

def _containers(template):
    cs = template.spec.containers
    return ",".join(c.name for c in cs) or NONE, ",".join(c.image for c in cs) or NONE


def _deployment(d, wide, at):
    want = d.spec.replicas if d.spec.HasField("replicas") else 1
    st = d.status
    row = [d.metadata.name, f"{st.ready_replicas}/{want}", str(st.updated_replicas),
           str(st.available_replicas), age(d.metadata.creation_timestamp, at)]
    if wide:
        row += [*_containers(d.spec.template), format_selector(d.spec.selector)]
    return row


def _replicaset(r, wide, at):
    want = r.spec.replicas if r.spec.HasField("replicas") else 1
    row = [r.metadata.name, str(want), str(r.status.replicas), str(r.status.ready_replicas),
           age(r.metadata.creation_timestamp, at)]
    if wide:
        row += [*_containers(r.spec.template), format_selector(r.spec.selector)]
    return row


# --------------------------------------------------------------------- nodes

def node_status(n) -> str:
    status = []
    for c in n.status.conditions:
        if c.type == "Ready":
            status = ["Ready" if c.status == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if n.spec.unschedulable:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(n) -> str:
    roles = set()
    for k, v in n.metadata.labels.items():
        if k.startswith("node-role.kubernetes.io/"):
            roles.add(k.split("/", 1)[1])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(r for r in roles if r)) or NONE


def _node(n, wide, at):
    row = [n.metadata.name, node_status(n), node_roles(n), age(n.metadata.creation_timestamp, at),
           n.status.node_info.kubelet_version]
    if wide:
        addr = {a.type: a.address for a in reversed(n.status.addresses)}
        info = n.status.node_info
        row += [addr.get("InternalIP", NONE), addr.get("ExternalIP", NONE),
                info.os_image or "<unknown>", info.kernel_version or "<unknown>",
                info.container_runtime_version or "<unknown>"]
    return row


# --------------------------------------------------------------------- other

def _namespace(n, wide, at):
    return [n.metadata.name, n.status.phase, age(n.metadata.creation_timestamp, at)]


def format_endpoints(ep, limit: int = 3) -> str:
    items: list[str] = []
    count = 0
    more = False
    for ss in ep.subsets:
        ports = list(ss.ports) or [None]
        for port in ports:
            count += len(ss.addresses)
            for a in ss.addresses:
                if len(items) == limit:
                    more = True
                    break
                if port is None:
                    items.append(a.ip)
                else:
                    host = f"[{a.ip}]" if ":" in a.ip else a.ip
                    items.append(f"{host}:{port.port}")
    if not items:
        return NONE
    s = ",".join(items)
    return f"{s} + {count - limit} more..." if more else s


def _endpoints(e, wide, at):
    return [e.metadata.name, format_endpoints(e), age(e.metadata.creation_timestamp, at)]


def event_times(e, at=None) -> tuple[str, str]:
    """(LAST SEEN, FIRST SEEN) with kubectl's `(xN over M)` for repeats."""
    first = age(e.first_timestamp, at) if ts_seconds(e.first_timestamp) else age(e.event_time, at)
    last = age(e.last_timestamp, at) if ts_seconds(e.last_timestamp) else first
    if e.count > 1:
        last = f"{last} (x{e.count} over {first})"
    return last, first


def _lease(l, wide, at):
    return [l.metadata.name, l.spec.holder_identity, age(l.metadata.creation_timestamp, at)]


def event_sort_key(e) -> float:
    return (ts_seconds(e.last_timestamp) or ts_seconds(e.event_time)
            or ts_seconds(e.first_timestamp) or ts_seconds(e.metadata.creation_timestamp) or 0.0)


# ------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Column:
    """metav1.TableColumnDefinition."""
    name: str
    description: str = ""
    priority: int = 0
    type: str = "string"
    format: str = ""


def _cols(names: str, wide: str = "") -> list[Column]:
    """Columns from `NAME|READY|...` (priority 0) and wide-only ones (priority 1)."""
    return ([Column(n) for n in names.split("|") if n]
            + [Column(n, priority=1) for n in wide.split("|") if n])


_NAME = "Name must be unique within a namespace."
_AGE = "CreationTimestamp is a timestamp representing the server time when this object was created."


@dataclass(frozen=True)
class Printer:
    columns: list[Column]
    cells: Callable            # (obj, at) -> every column's cell, in order

    def visible(self, wide: bool) -> list[int]:
        return [i for i, c in enumerate(self.columns) if wide or c.priority == 0]


def _all(fn):
    return lambda obj, at: fn(obj, True, at)


def _event_cells(e, at):
    last, first = event_times(e, at)
    src = e.source.component or e.reporting_component
    if e.source.host:
        src += f", {e.source.host}"
    return [last, e.type, e.reason, f"{e.involved_object.kind.lower()}/{e.involved_object.name}",
            e.involved_object.field_path, src, e.message.strip(), first, str(e.count or 1), e.metadata.name]


PRINTERS: dict[str, Printer] = {
    "Pod": Printer(_cols("NAME|READY|STATUS|RESTARTS|AGE", "IP|NODE|NOMINATED NODE|READINESS GATES"), _all(_pod)),
    "Service": Printer(_cols("NAME|TYPE|CLUSTER-IP|EXTERNAL-IP|PORT(S)|AGE", "SELECTOR"), _all(_service)),
    "Deployment": Printer(_cols("NAME|READY|UP-TO-DATE|AVAILABLE|AGE", "CONTAINERS|IMAGES|SELECTOR"),
                          _all(_deployment)),
    "ReplicaSet": Printer(_cols("NAME|DESIRED|CURRENT|READY|AGE", "CONTAINERS|IMAGES|SELECTOR"),
                          _all(_replicaset)),
    "Node": Printer(_cols("NAME|STATUS|ROLES|AGE|VERSION",
                          "INTERNAL-IP|EXTERNAL-IP|OS-IMAGE|KERNEL-VERSION|CONTAINER-RUNTIME"), _all(_node)),
    "Namespace": Printer(_cols("NAME|STATUS|AGE"), _all(_namespace)),
    "Endpoints": Printer(_cols("NAME|ENDPOINTS|AGE"), _all(_endpoints)),
    "Event": Printer([Column("LAST SEEN"), Column("TYPE"), Column("REASON"), Column("OBJECT"),
                      Column("SUBOBJECT", priority=1), Column("SOURCE", priority=1), Column("MESSAGE"),
                      Column("FIRST SEEN", priority=1), Column("COUNT", priority=1),
                      Column("NAME", priority=1)], _event_cells),
    "Lease": Printer(_cols("NAME|HOLDER|AGE"), _all(_lease)),
}


def column_description(col: Column) -> str:
    return {"NAME": _NAME, "AGE": _AGE}.get(col.name, col.description)


from machinery.tables_workloads import WORKLOAD_PRINTERS  # noqa: E402  (uses the helpers above)

PRINTERS.update(WORKLOAD_PRINTERS)

from machinery.tables_network import NETWORK_PRINTERS  # noqa: E402  (uses the helpers above)

PRINTERS.update(NETWORK_PRINTERS)

from machinery.tables_autoscaling import AUTOSCALING_PRINTERS  # noqa: E402  (uses the helpers above)

PRINTERS.update(AUTOSCALING_PRINTERS)

from machinery.tables_certificates import CERTIFICATE_PRINTERS  # noqa: E402  (uses the helpers above)
from machinery.tables_rbac import RBAC_PRINTERS  # noqa: E402  (uses the helpers above)

PRINTERS.update(CERTIFICATE_PRINTERS)
PRINTERS.update(RBAC_PRINTERS)

from machinery.tables_storage import STORAGE_PRINTERS, access_modes  # noqa: E402,F401  (re-exported)

PRINTERS.update(STORAGE_PRINTERS)
