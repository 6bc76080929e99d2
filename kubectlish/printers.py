"""Tables and AGE exactly as kubectl prints them.

Column sets and cell logic are ports of kubernetes/pkg/printers/internalversion
(printPod, printService, printNode, ...). Alignment uses a port of Go's
text/tabwriter (`tabwrite`), which kubectl uses with minwidth 6 and padding 3
for tables and minwidth 0 and padding 2 for describe: a column's width is
taken over each run of consecutive lines that have a cell in that column,
which is what makes describe's nested blocks line up the way kubectl's do.
"""
from __future__ import annotations

import datetime as _dt

from machinery import kinds

NONE = "<none>"


# ----------------------------------------------------------------- tabwriter

def tabwrite(lines: list[str], minwidth: int = 6, padding: int = 3) -> str:
    """Align tab-separated cells like Go's tabwriter (flags 0, pad ' ').

    Every cell followed by a tab is "terminated" and padded; the last cell of
    a line is printed as is. Column j's width is computed over each block of
    consecutive lines that all have a terminated cell j."""
    rows = [ln.split("\t") for ln in lines]
    widths: list[list[int]] = [[0] * max(len(r) - 1, 0) for r in rows]

    def block(col: int, start: int, end: int) -> None:
        i = start
        while i < end:
            if len(rows[i]) - 1 <= col:
                i += 1
                continue
            j = i
            while j < end and len(rows[j]) - 1 > col:
                j += 1
            w = max(len(rows[k][col]) for k in range(i, j)) + padding
            w = max(w, minwidth)
            for k in range(i, j):
                widths[k][col] = w
            block(col + 1, i, j)
            i = j

    block(0, 0, len(rows))
    out = []
    for r, ws in zip(rows, widths):
        cells = [c.ljust(w) for c, w in zip(r[:-1], ws)] + [r[-1]]
        out.append("".join(cells))
    return "\n".join(out) + ("\n" if out else "")


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


def ts_seconds(ts) -> float | None:
    """A protobuf Timestamp as epoch seconds; None when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.seconds + ts.nanos / 1e9


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
    """(READY, STATUS, RESTARTS) — kubectl's printPod."""
    st = pod.status
    reason = st.reason or st.phase
    total = len(pod.spec.containers)
    ready = 0
    restarts = 0
    last_restart: float | None = None
    has_running = False
    for cs in reversed(st.container_statuses):
        restarts += cs.restart_count
        if cs.last_state.HasField("terminated"):
            fin = ts_seconds(cs.last_state.terminated.finished_at)
            if fin is not None and (last_restart is None or fin > last_restart):
                last_restart = fin
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


def _event(e, wide, at):
    last, first = event_times(e, at)
    obj = f"{e.involved_object.kind.lower()}/{e.involved_object.name}"
    row = [last, e.type, e.reason, obj]
    if wide:
        src = e.source.component or e.reporting_component
        if e.source.host:
            src += f", {e.source.host}"
        row += [e.involved_object.field_path, src, e.message.strip(), first, str(e.count or 1),
                e.metadata.name]
    else:
        row.append(e.message.strip())
    return row


def _more(items: list[str], count: int, limit: int = 3) -> str:
    """kubectl's listWithMoreString: the first LIMIT items, "+ N more...", "<unset>" when empty."""
    s = ",".join(items[:limit])
    if count > limit:
        return f"{s} + {count - limit} more..."
    return s or "<unset>"


def _endpoint_slice(es, wide, at):
    """printEndpointSlice: ports (number, else name, else *) and addresses, three of each at most."""
    ports = [str(p.port) if p.HasField("port") else (p.name if p.HasField("name") else "*") for p in es.ports]
    addrs = [a for e in es.endpoints for a in e.addresses]
    return [es.metadata.name, es.address_type, _more(ports, len(ports)), _more(addrs, len(addrs)),
            age(es.metadata.creation_timestamp, at)]


def _lease(l, wide, at):
    return [l.metadata.name, l.spec.holder_identity, age(l.metadata.creation_timestamp, at)]


def event_sort_key(e) -> float:
    return (ts_seconds(e.last_timestamp) or ts_seconds(e.event_time)
            or ts_seconds(e.first_timestamp) or ts_seconds(e.metadata.creation_timestamp) or 0.0)


# ------------------------------------------------------------------- tables

COLUMNS = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"], _pod),
    "Service": (["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], _service),
    "Deployment": (["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                   ["CONTAINERS", "IMAGES", "SELECTOR"], _deployment),
    "ReplicaSet": (["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                   ["CONTAINERS", "IMAGES", "SELECTOR"], _replicaset),
    "Node": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], _node),
    "Namespace": (["NAME", "STATUS", "AGE"], [], _namespace),
    "Endpoints": (["NAME", "ENDPOINTS", "AGE"], [], _endpoints),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
              ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
               "FIRST SEEN", "COUNT", "NAME"], _event),
    "Lease": (["NAME", "HOLDER", "AGE"], [], _lease),
    "EndpointSlice": (["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], [], _endpoint_slice),
}


def headers(kind: str, *, wide=False, all_namespaces=False, show_labels=False) -> list[str]:
    base, extra, _ = COLUMNS[kind]
    if kind == "Event" and wide:
        cols = list(extra)
    else:
        cols = base + (extra if wide else [])
    if all_namespaces and kinds.BY_KIND[kind].namespaced:
        cols = ["NAMESPACE"] + cols
    if show_labels:
        cols.append("LABELS")
    return cols


def row(obj, *, wide=False, all_namespaces=False, show_labels=False, show_kind=False,
        at: float | None = None) -> list[str]:
    info = kinds.of(obj)
    cells = COLUMNS[info.kind][2](obj, wide, at)
    if show_kind and info.kind != "Event":
        cells[0] = f"{info.qualified_singular}/{cells[0]}"
    if all_namespaces and info.namespaced:
        cells = [obj.metadata.namespace] + cells
    if show_labels:
        cells.append(format_labels(obj.metadata.labels))
    return cells


def table(kind: str, objs, *, wide=False, all_namespaces=False, show_labels=False, show_kind=False,
          no_headers=False, at: float | None = None) -> str:
    lines = []
    if not no_headers:
        lines.append("\t".join(headers(kind, wide=wide, all_namespaces=all_namespaces,
                                       show_labels=show_labels)))
    for o in objs:
        lines.append("\t".join(row(o, wide=wide, all_namespaces=all_namespaces, show_labels=show_labels,
                                   show_kind=show_kind, at=at)))
    return tabwrite(lines)


# ------------------------------------------------------------ -o yaml/json

def manifest(obj) -> dict:
    from machinery import codec
    return codec.to_dict(obj)


def render(objs: list, fmt: str, *, single: bool) -> str:
    """-o yaml|json|name for one object (single) or a kind: List."""
    from machinery import codec
    if fmt == "name":
        return "".join(f"{kinds.of(o).qualified_singular}/{o.metadata.name}\n" for o in objs)
    if single and len(objs) == 1:
        data = manifest(objs[0])
    else:
        data = {"apiVersion": "v1", "items": [manifest(o) for o in objs], "kind": "List",
                "metadata": {"resourceVersion": ""}}
    if fmt == "json":
        return codec.to_json(data) + "\n"
    return codec.to_yaml(data)
