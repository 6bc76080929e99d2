"""Building blocks of `kctl describe` output, shared by every describer and
by `rollout history --revision`: aligned rendering, times, label maps,
condition and event tables, containers, volumes, pod templates, and the
scheduler's decision record.

Lines use `\t` between a key and its value; `render()` aligns them with
the tabwriter port (minwidth 0, padding 2, as kubectl's describe does).
"""
from __future__ import annotations

import datetime as dt
import json

from kubectlish.printers import NONE, event_times, tabwrite, ts_seconds

DECISION = "scheduler.kctl.io/decision"


def render(lines: list[str]) -> str:
    return tabwrite(lines, minwidth=0, padding=2)


def when(ts) -> str:
    """kubectl's describe time format: Mon, 23 Nov 2026 01:40:00 +0000."""
    t = ts_seconds(ts)
    if t is None:
        return NONE
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _map_lines(title: str, m, indent: str = "") -> list[str]:
    items = sorted(m.items())
    if not items:
        return [f"{indent}{title}:\t{NONE}"]
    out = [f"{indent}{title}:\t{items[0][0]}={items[0][1]}"]
    out += [f"{indent}\t{k}={v}" for k, v in items[1:]]
    return out


def _meta(obj, with_ns=True) -> list[str]:
    m = obj.metadata
    lines = [f"Name:\t{m.name}"]
    if with_ns:
        lines.append(f"Namespace:\t{m.namespace}")
    lines.append(f"CreationTimestamp:\t{when(m.creation_timestamp)}")
    lines += _map_lines("Labels", m.labels)
    ann = {k: v for k, v in m.annotations.items()
           if k not in ("kubectl.kubernetes.io/last-applied-configuration", DECISION)}
    lines += _map_lines("Annotations", ann)
    return lines


def _conditions(conds, extra=("Reason",)) -> list[str]:
    if not conds:
        return []
    rows = [["Type", "Status", *extra], ["----", "------", *("-" * len(e) for e in extra)]]
    rows += [[c.type, c.status, *(getattr(c, e.lower(), "") for e in extra)] for c in conds]
    return ["Conditions:"] + ["  " + "\t".join(r) for r in rows]


def events_lines(events) -> list[str]:
    if not events:
        return ["Events:\t<none>"]
    lines = ["Events:", "  Type\tReason\tAge\tFrom\tMessage", "  ----\t------\t----\t----\t-------"]
    for e in events:
        last, _ = event_times(e)
        src = e.source.component or e.reporting_component
        lines.append(f"  {e.type}\t{e.reason}\t{last}\t{src}\t{e.message.strip()}")
    return lines


def _probe(p) -> str:
    if p.HasField("http_get"):
        h = p.http_get
        port = h.port.int_val if h.port.WhichOneof("value") == "int_val" else h.port.str_val
        what = f"http-get {(h.scheme or 'HTTP').lower()}://{h.host}:{port}{h.path}"
    elif p.HasField("tcp_socket"):
        port = p.tcp_socket.port
        what = f"tcp-socket {p.tcp_socket.host}:{port.int_val if port.WhichOneof('value') == 'int_val' else port.str_val}"
    elif p.HasField("exec"):
        what = f"exec [{' '.join(p.exec.command)}]"
    else:
        what = "unknown"
    return (f"{what} delay={p.initial_delay_seconds}s timeout={p.timeout_seconds or 1}s "
            f"period={p.period_seconds or 10}s #success={p.success_threshold or 1} "
            f"#failure={p.failure_threshold or 3}")


def _state(prefix: str, title: str, st) -> list[str]:
    if st.HasField("running"):
        return [f"{prefix}{title}:\tRunning", f"{prefix}  Started:\t{when(st.running.started_at)}"]
    if st.HasField("waiting"):
        lines = [f"{prefix}{title}:\tWaiting", f"{prefix}  Reason:\t{st.waiting.reason}"]
        if st.waiting.message:
            lines.append(f"{prefix}  Message:\t{st.waiting.message}")
        return lines
    if st.HasField("terminated"):
        t = st.terminated
        lines = [f"{prefix}{title}:\tTerminated", f"{prefix}  Reason:\t{t.reason}"]
        if t.message:
            lines.append(f"{prefix}  Message:\t{t.message}")
        lines += [f"{prefix}  Exit Code:\t{t.exit_code}", f"{prefix}  Started:\t{when(t.started_at)}",
                  f"{prefix}  Finished:\t{when(t.finished_at)}"]
        return lines
    return [f"{prefix}{title}:\tWaiting"] if title == "State" else []


def seccomp_lines(holder, indent: str, localhost_indent: str) -> list[str]:
    """kubectl's SeccompProfile (and LocalhostProfile) lines of a pod spec or container."""
    if not holder.HasField("security_context") or not holder.security_context.HasField("seccomp_profile"):
        return []
    sp = holder.security_context.seccomp_profile
    lines = [f"{indent}SeccompProfile:\t{sp.type}"]
    if sp.type == "Localhost":
        lines.append(f"{localhost_indent}LocalhostProfile:\t{sp.localhost_profile}")
    return lines


def container_lines(c, status=None, indent: int = 2, field_indent: int = 4) -> list[str]:
    p = " " * indent
    q = " " * field_indent
    lines = [f"{p}{c.name}:"]
    if status is not None:
        lines.append(f"{q}Container ID:\t{status.container_id}")
    lines.append(f"{q}Image:\t{c.image}")
    if status is not None:
        lines.append(f"{q}Image ID:\t{status.image_id}")
    ports = [f"{pt.container_port}/{pt.protocol or 'TCP'}" + (f" ({pt.name})" if pt.name else "") for pt in c.ports]
    lines.append(f"{q}Port{'s' if len(ports) > 1 else ''}:\t{', '.join(ports) or NONE}")
    host_ports = ", ".join(f"{pt.host_port}/{pt.protocol or 'TCP'}" for pt in c.ports)
    lines.append(f"{q}Host Port:\t{host_ports or NONE}")
    lines += seccomp_lines(c, q, q + "  ")
    if c.command:
        lines.append(f"{q}Command:")
        lines += [f"{q}  {a}" for a in c.command]
    if c.args:
        lines.append(f"{q}Args:")
        lines += [f"{q}  {a}" for a in c.args]
    if status is not None:
        lines += _state(q, "State", status.state)
        lines += _state(q, "Last State", status.last_state)
        lines.append(f"{q}Ready:\t{'True' if status.ready else 'False'}")
        lines.append(f"{q}Restart Count:\t{status.restart_count}")
    for title, res in (("Limits", c.resources.limits), ("Requests", c.resources.requests)):
        if res:
            lines.append(f"{q}{title}:")
            lines += [f"{q}  {k}:\t{v}" for k, v in sorted(res.items())]
    for title, probe in (("Liveness", "liveness_probe"), ("Readiness", "readiness_probe"),
                         ("Startup", "startup_probe")):
        if c.HasField(probe):
            lines.append(f"{q}{title}:\t{_probe(getattr(c, probe))}")
    if c.env:
        lines.append(f"{q}Environment:")
        for e in c.env:
            if e.HasField("value_from"):
                vf = e.value_from
                src = (f"({vf.field_ref.api_version or 'v1'}:{vf.field_ref.field_path})" if vf.HasField("field_ref")
                       else f"<set to the key '{vf.secret_key_ref.key}' in secret '{vf.secret_key_ref.name}'>"
                       if vf.HasField("secret_key_ref") else "<from a source>")
                lines.append(f"{q}  {e.name}:\t {src}")
            else:
                lines.append(f"{q}  {e.name}:\t{e.value}")
    else:
        lines.append(f"{q}Environment:\t{NONE}")
    if c.volume_mounts:
        lines.append(f"{q}Mounts:")
        lines += [f"{q}  {m.mount_path} from {m.name} ({'ro' if m.read_only else 'rw'})" for m in c.volume_mounts]
    else:
        lines.append(f"{q}Mounts:\t{NONE}")
    return lines


NONE_PTR = "<nil>"             # how kubectl prints an unset *bool


def volume_lines(volumes, indent: str = "") -> list[str]:
    if not volumes:
        return [f"{indent}Volumes:\t{NONE}"]
    lines = [f"{indent}Volumes:"]
    for v in volumes:
        lines.append(f"{indent}  {v.name}:")
        q = indent + "    "
        if v.HasField("empty_dir"):
            lines += [f"{q}Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)",
                      f"{q}Medium:\t{v.empty_dir.medium}", f"{q}SizeLimit:\t{v.empty_dir.size_limit or '<unset>'}"]
        elif v.HasField("host_path"):
            lines += [f"{q}Type:\tHostPath (bare host directory volume)", f"{q}Path:\t{v.host_path.path}"]
        elif v.HasField("secret"):
            lines += [f"{q}Type:\tSecret (a volume populated by a Secret)", f"{q}SecretName:\t{v.secret.secret_name}"]
        elif v.HasField("config_map"):
            lines += [f"{q}Type:\tConfigMap (a volume populated by a ConfigMap)", f"{q}Name:\t{v.config_map.name}"]
        elif v.HasField("persistent_volume_claim"):
            lines += [f"{q}Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
                      f"{q}ClaimName:\t{v.persistent_volume_claim.claim_name}"]
        elif v.HasField("projected"):
            lines += projected_lines(v.projected, q)
    return lines


def projected_lines(projected, q: str) -> list[str]:
    """kubectl's printProjectedVolumeSource (the kube-api-access-* volume of every pod)."""
    def opt(src) -> str:
        return str(src.optional).lower() if src.HasField("optional") else NONE_PTR
    lines = [f"{q}Type:\tProjected (a volume that contains injected data from multiple sources)"]
    for src in projected.sources:
        if src.HasField("secret"):
            lines += [f"{q}SecretName:\t{src.secret.name}", f"{q}SecretOptionalName:\t{opt(src.secret)}"]
        elif src.HasField("downward_api"):
            lines.append(f"{q}DownwardAPI:\ttrue")
        elif src.HasField("config_map"):
            lines += [f"{q}ConfigMapName:\t{src.config_map.name}", f"{q}ConfigMapOptional:\t{opt(src.config_map)}"]
        elif src.HasField("service_account_token"):
            lines.append(f"{q}TokenExpirationSeconds:\t{src.service_account_token.expiration_seconds}")
    return lines


def pod_template_lines(tmpl, level: int = 0) -> list[str]:
    """kubectl's `Pod Template:` block (deployments, replica sets, rollout history)."""
    ind = "  " * level
    lines = [f"{ind}Pod Template:"]
    lines += _map_lines("Labels", tmpl.metadata.labels, ind + "  ")
    if tmpl.metadata.annotations:
        lines += _map_lines("Annotations", tmpl.metadata.annotations, ind + "  ")
    for label, containers in (("Init Containers", tmpl.spec.init_containers), ("Containers", tmpl.spec.containers)):
        if containers or label == "Containers":
            lines.append(f"{ind}  {label}:")
            for c in containers:
                lines += container_lines(c, None, indent=len(ind) + 3, field_indent=len(ind) + 4)
    lines += volume_lines(tmpl.spec.volumes, ind + "  ")
    return lines


def decision_lines(raw: str) -> list[str]:
    """The scheduler's decision record as a small table (see scheduler/decision.py)."""
    try:
        d = json.loads(raw)
    except ValueError:
        return [f"Scheduling Decision:\t<unreadable: {raw[:60]}>"]
    node = d.get("node") or "<none> (unschedulable)"
    lines = [f"Scheduling Decision:\t{d.get('time', '')}",
             f"  Node:\t{node}",
             f"  Nodes:\t{d.get('nodes', '?')} considered, {d.get('feasible', '?')} feasible, "
             f"{d.get('scored', '?')} scored"]
    filtered = d.get("filtered") or []
    if filtered:
        rows = ["  FILTERED BY\tNODES\tEXAMPLES"]
        rows += [f"  {f.get('reason', '')}\t{f.get('count', '')}\t{', '.join(f.get('nodes') or []) or NONE}"
                 for f in filtered]
        lines += [""] + rows
    scores = d.get("scores") or []
    if scores:
        plugins = sorted({p for s in scores for p in (s.get("plugins") or {})})
        rows = ["  NODE\tTOTAL\t" + "\t".join(plugins)]
        for s in scores:
            parts = s.get("plugins") or {}
            rows.append(f"  {s.get('node', '')}\t{_num(s.get('total'))}\t" +
                        "\t".join(_num(parts.get(p)) for p in plugins))
        lines += [""] + rows
    pre = d.get("preemption")
    if pre:
        lines += ["", f"  Preemption:\t{pre.get('message', '')}"]
        lines += [f"  Victim:\t{v}" for v in pre.get("victims") or []]
    return lines


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)
