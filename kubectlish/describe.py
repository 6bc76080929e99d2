"""`kctl describe KIND NAME`: kubectl's human-readable object reports.

Each describer returns a list of lines in which `\\t` separates a key from
its value; `render()` aligns them with the tabwriter port (minwidth 0,
padding 2, as kubectl's describe does), so nested blocks line up the way
kubectl's do. Events are the object's own, oldest first: listed with an
involvedObject field selector and checked client-side on kind, name and uid
(so an older object of the same name does not lend its events).

For pods the scheduler's decision record (annotation
`scheduler.kctl.io/decision`, format in scheduler/decision.py) is shown as a
small table: filtered nodes by reason and the best-scored candidates.
"""
from __future__ import annotations

import click

from kubectlish.common import Ctx, err, format_api_error, parse_targets, run
from kubectlish.describe_blocks import (DECISION, _conditions, _map_lines, _meta, container_lines,
                                        decision_lines, events_lines, pod_template_lines, render,
                                        seccomp_lines, volume_lines, when)
from kubectlish.describe_workloads import DESCRIBERS
from kubectlish.printers import NONE, age, format_labels, format_selector, node_status
from machinery import errors


async def object_events(client, obj) -> list:
    """The object's events, oldest first: listed with an involvedObject field
    selector (all events of the namespace if the server refuses it), then
    matched on kind, name and uid client-side."""
    from kubectlish.printers import event_sort_key
    kind = obj.kind or type(obj).__name__
    ns = obj.metadata.namespace
    try:
        evs, _ = await client.list("events", ns, field_selector=(
            f"involvedObject.kind={kind},involvedObject.name={obj.metadata.name}"))
    except errors.BadRequest:
        evs, _ = await client.list("events", ns)
    except errors.ApiError:
        return []
    mine = [e for e in evs if e.involved_object.name == obj.metadata.name
            and e.involved_object.kind == kind
            and (not e.involved_object.uid or e.involved_object.uid == obj.metadata.uid)]
    return sorted(mine, key=event_sort_key)


def describe_pod(p, events) -> list[str]:
    m, s = p.metadata, p.status
    lines = [f"Name:\t{m.name}", f"Namespace:\t{m.namespace}",
             f"Priority:\t{p.spec.priority if p.spec.HasField('priority') else 0}",
             *([f"Priority Class Name:\t{p.spec.priority_class_name}"] if p.spec.priority_class_name else []),
             f"Service Account:\t{p.spec.service_account_name or 'default'}",
             f"Node:\t{p.spec.node_name + ('/' + s.host_ip if s.host_ip else '') if p.spec.node_name else NONE}",
             f"Start Time:\t{when(s.start_time)}"]
    lines += _map_lines("Labels", m.labels)
    ann = {k: v for k, v in m.annotations.items()
           if k not in ("kubectl.kubernetes.io/last-applied-configuration", DECISION)}
    lines += _map_lines("Annotations", ann)
    if m.HasField("deletion_timestamp"):
        lines.append(f"Status:\tTerminating (lasts {age(m.deletion_timestamp)})")
        lines.append(f"Termination Grace Period:\t{m.deletion_grace_period_seconds}s")
    else:
        lines.append(f"Status:\t{s.phase or 'Pending'}")
    if s.reason:
        lines.append(f"Reason:\t{s.reason}")
    if s.message:
        lines.append(f"Message:\t{s.message}")
    lines += seccomp_lines(p.spec, "", "")
    ip = s.pod_ips[0].ip if s.pod_ips else s.pod_ip
    lines.append(f"IP:\t{ip}")
    ips = [i.ip for i in s.pod_ips] or ([s.pod_ip] if s.pod_ip else [])
    lines += ["IPs:"] + [f"  IP:\t{i}" for i in ips] if ips else [f"IPs:\t{NONE}"]
    ctrl = next((o for o in m.owner_references if o.controller), None)
    if ctrl is not None:
        lines.append(f"Controlled By:\t{ctrl.kind}/{ctrl.name}")
    if s.nominated_node_name:
        lines.append(f"NominatedNodeName:\t{s.nominated_node_name}")
    if p.spec.init_containers:
        lines += _pod_containers("Init Containers", p.spec.init_containers, s.init_container_statuses)
    lines += _pod_containers("Containers", p.spec.containers, s.container_statuses)
    lines += _conditions(s.conditions, extra=())
    lines += volume_lines(p.spec.volumes)
    lines.append(f"QoS Class:\t{s.qos_class or NONE}")
    lines.append(f"Node-Selectors:\t{format_labels(p.spec.node_selector)}")
    tols = [f"{t.key or ''}{'=' + t.value if t.value else ''}{':' + t.effect if t.effect else ''}"
            f"{' op=Exists' if t.operator == 'Exists' else ''}"
            f"{' for ' + str(t.toleration_seconds) + 's' if t.HasField('toleration_seconds') else ''}"
            for t in p.spec.tolerations]
    lines.append(f"Tolerations:\t{tols[0] if tols else NONE}")
    lines += [f"\t{t}" for t in tols[1:]]
    if DECISION in m.annotations:
        lines += decision_lines(m.annotations[DECISION])
    lines += events_lines(events)
    return lines


def _pod_containers(label: str, containers, container_statuses) -> list[str]:
    """describeContainers: the label, then each container with its status
    (a container the agent has not reported yet shows as Waiting)."""
    from machinery.pb import core_pb2
    statuses = {cs.name: cs for cs in container_statuses}
    lines = [f"{label}:"]
    for c in containers:
        lines += container_lines(c, statuses.get(c.name) or core_pb2.ContainerStatus(name=c.name))
    return lines


# ---------------------------------------------------------------- workloads

def _strategy(d) -> list[str]:
    st = d.spec.strategy
    lines = [f"StrategyType:\t{st.type or 'RollingUpdate'}", f"MinReadySeconds:\t{d.spec.min_ready_seconds}"]
    if (st.type or "RollingUpdate") == "RollingUpdate":
        ru = st.rolling_update

        def ios(v, default):
            w = v.WhichOneof("value")
            return default if w is None else str(getattr(v, w))
        lines.append(f"RollingUpdateStrategy:\t{ios(ru.max_unavailable, '25%')} max unavailable, "
                     f"{ios(ru.max_surge, '25%')} max surge")
    return lines


def describe_deployment(d, events, rss=()) -> list[str]:
    s = d.status
    want = d.spec.replicas if d.spec.HasField("replicas") else 1
    lines = _meta(d)
    lines.append(f"Selector:\t{format_selector(d.spec.selector)}")
    lines.append(f"Replicas:\t{want} desired | {s.updated_replicas} updated | {s.replicas} total | "
                 f"{s.available_replicas} available | {s.unavailable_replicas} unavailable")
    lines += _strategy(d)
    if d.spec.paused:
        lines.append("Paused:\ttrue")
    lines += pod_template_lines(d.spec.template)
    lines += _conditions(d.status.conditions)
    from kubectlish.rollout import REVISION
    cur = d.metadata.annotations.get(REVISION)
    new = [r for r in rss if r.metadata.annotations.get(REVISION) == cur] if cur else []
    old = [r for r in rss if r not in new and (r.spec.replicas or r.status.replicas)]
    fmt = lambda rs: ", ".join(f"{r.metadata.name} ({r.status.replicas}/{r.spec.replicas} replicas created)"
                               for r in rs) or NONE
    lines.append(f"OldReplicaSets:\t{fmt(old)}")
    lines.append(f"NewReplicaSet:\t{fmt(new)}")
    return lines + events_lines(events)


def describe_replicaset(r, events, pods=()) -> list[str]:
    lines = _meta(r)
    lines.append(f"Selector:\t{format_selector(r.spec.selector)}")
    ctrl = next((o for o in r.metadata.owner_references if o.controller), None)
    if ctrl is not None:
        lines.append(f"Controlled By:\t{ctrl.kind}/{ctrl.name}")
    want = r.spec.replicas if r.spec.HasField("replicas") else 1
    lines.append(f"Replicas:\t{r.status.replicas} current / {want} desired")
    phases = {}
    for p in pods:
        phases[p.status.phase or "Pending"] = phases.get(p.status.phase or "Pending", 0) + 1
    lines.append(f"Pods Status:\t{phases.get('Running', 0)} Running / {phases.get('Pending', 0)} Waiting / "
                 f"{phases.get('Succeeded', 0)} Succeeded / {phases.get('Failed', 0)} Failed")
    lines += pod_template_lines(r.spec.template)
    lines += _conditions(r.status.conditions)
    return lines + events_lines(events)


def describe_node(n, events, pods=()) -> list[str]:
    lines = _meta(n, with_ns=False)
    taints = [f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}" for t in n.spec.taints]
    lines.append(f"Taints:\t{taints[0] if taints else NONE}")
    lines += [f"\t{t}" for t in taints[1:]]
    lines.append(f"Unschedulable:\t{'true' if n.spec.unschedulable else 'false'}")
    lines.append(f"Status:\t{node_status(n)}")
    if n.status.conditions:
        lines += ["Conditions:", "  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
                  "  ----\t------\t-----------------\t------------------\t------\t-------"]
        for c in n.status.conditions:
            lines.append(f"  {c.type}\t{c.status}\t{when(c.last_heartbeat_time)}\t"
                         f"{when(c.last_transition_time)}\t{c.reason}\t{c.message}")
    if n.status.addresses:
        lines.append("Addresses:")
        lines += [f"  {a.type}:\t{a.address}" for a in n.status.addresses]
    for title, res in (("Capacity", n.status.capacity), ("Allocatable", n.status.allocatable)):
        if res:
            lines.append(f"{title}:")
            lines += [f"  {k}:\t{v}" for k, v in sorted(res.items())]
    i = n.status.node_info
    lines += ["System Info:", f"  Kernel Version:\t{i.kernel_version}", f"  OS Image:\t{i.os_image}",
              f"  Container Runtime Version:\t{i.container_runtime_version}",
              f"  Kubelet Version:\t{i.kubelet_version}"]
    lines.append(f"PodCIDR:\t{n.spec.pod_cidr or NONE}")
    lines.append(f"Non-terminated Pods:\t({len(pods)} in total)")
    if pods:
        lines += ["  Namespace\tName\tCPU Requests\tMemory Requests\tAge",
                  "  ---------\t----\t------------\t---------------\t---"]
        for p in pods:
            cpu = ",".join(c.resources.requests.get("cpu", "") for c in p.spec.containers if c.resources.requests.get("cpu")) or "0"
            mem = ",".join(c.resources.requests.get("memory", "") for c in p.spec.containers if c.resources.requests.get("memory")) or "0"
            lines.append(f"  {p.metadata.namespace}\t{p.metadata.name}\t{cpu}\t{mem}\t{age(p.metadata.creation_timestamp)}")
    return lines + events_lines(events)


def describe_service(s, events, endpoints=None) -> list[str]:
    lines = _meta(s)
    lines.append(f"Selector:\t{format_labels(s.spec.selector)}")
    lines.append(f"Type:\t{s.spec.type or 'ClusterIP'}")
    lines.append(f"IP:\t{s.spec.cluster_ip or NONE}")
    if s.spec.type == "LoadBalancer":
        lines.append("Note:\tkctl serves LoadBalancer services as NodePort (no load balancer provider)")
    from kubectlish.printers import format_endpoints
    for p in s.spec.ports:
        tp = p.target_port
        which = tp.WhichOneof("value")
        target = str(getattr(tp, which)) if which else str(p.port)
        lines.append(f"Port:\t{p.name or '<unset>'}\t{p.port}/{p.protocol or 'TCP'}")
        lines.append(f"TargetPort:\t{target}/{p.protocol or 'TCP'}")
        if p.node_port:
            lines.append(f"NodePort:\t{p.name or '<unset>'}\t{p.node_port}/{p.protocol or 'TCP'}")
    lines.append(f"Endpoints:\t{format_endpoints(endpoints) if endpoints is not None else NONE}")
    lines.append(f"Session Affinity:\t{s.spec.session_affinity or 'None'}")
    return lines + events_lines(events)


def describe_namespace(n, events) -> list[str]:
    lines = [f"Name:\t{n.metadata.name}"] + _map_lines("Labels", n.metadata.labels)
    ann = {k: v for k, v in n.metadata.annotations.items() if k != "kubectl.kubernetes.io/last-applied-configuration"}
    lines += _map_lines("Annotations", ann)
    lines.append(f"Status:\t{n.status.phase}")
    lines.append("")
    lines.append("No resource quota.")
    lines.append("")
    lines.append("No LimitRange resource.")
    return lines


def describe_endpoints(e, events) -> list[str]:
    lines = _meta(e)
    lines.append("Subsets:")
    for ss in e.subsets:
        lines.append(f"  Addresses:\t{','.join(a.ip for a in ss.addresses) or NONE}")
        lines.append(f"  NotReadyAddresses:\t{','.join(a.ip for a in ss.not_ready_addresses) or NONE}")
        if ss.ports:
            lines += ["  Ports:", "    Name\tPort\tProtocol", "    ----\t----\t--------"]
            lines += [f"    {p.name or '<unset>'}\t{p.port}\t{p.protocol or 'TCP'}" for p in ss.ports]
        lines.append("")
    return lines + events_lines(events)


def describe_generic(o, events) -> list[str]:
    """Kinds without a dedicated describer: metadata plus the manifest's spec."""
    from machinery import codec
    lines = _meta(o, with_ns=bool(o.metadata.namespace))
    d = codec.to_dict(o)
    for k in ("spec", "subsets", "involvedObject", "reason", "message"):
        if k in d:
            body = codec.to_yaml({k: d[k]}).rstrip("\n").splitlines()
            lines += [ln.replace("\t", " ") for ln in body]
    return lines + events_lines(events)


async def describe_one(client, obj) -> str:
    kind = type(obj).__name__
    events = await object_events(client, obj)
    ns = obj.metadata.namespace
    if kind == "Pod":
        lines = describe_pod(obj, events)
    elif kind == "Deployment":
        from kubectlish.rollout import owned_replicasets
        lines = describe_deployment(obj, events, await owned_replicasets(client, obj))
    elif kind == "ReplicaSet":
        pods, _ = await client.list("pods", ns)
        mine = [p for p in pods if any(o.uid == obj.metadata.uid for o in p.metadata.owner_references)]
        lines = describe_replicaset(obj, events, mine)
    elif kind == "Node":
        pods, _ = await client.list("pods", "", field_selector=f"spec.nodeName={obj.metadata.name}")
        pods = [p for p in pods if p.spec.node_name == obj.metadata.name
                and p.status.phase not in ("Succeeded", "Failed")]
        lines = describe_node(obj, events, pods)
    elif kind == "Service":
        try:
            ep = await client.get("endpoints", obj.metadata.name, ns)
        except errors.NotFound:
            ep = None
        lines = describe_service(obj, events, ep)
    elif kind == "Namespace":
        lines = describe_namespace(obj, events)
    elif kind == "Endpoints":
        lines = describe_endpoints(obj, events)
    elif kind == "CertificateSigningRequest":
        from kubectlish.certificates import describe_csr
        lines = describe_csr(obj, events)
    elif kind in DESCRIBERS:
        pods, _ = await client.list("pods", ns)
        mine = [p for p in pods if any(o.uid == obj.metadata.uid and o.controller for o in p.metadata.owner_references)]
        lines = DESCRIBERS[kind](obj, events, mine)
    else:
        from kubectlish.describe_storage import describe_storage
        lines = await describe_storage(client, obj, events) or describe_generic(obj, events)
    return render(lines)


async def run_describe(ctx: Ctx, args, selector, all_namespaces) -> int:
    client = ctx.client()
    failures = 0
    outputs = []
    for t in parse_targets(args):
        if t.names:
            objs = []
            for n in t.names:
                try:
                    objs.append(await client.get(t.info, n, ctx.namespace))
                except errors.NotFound as exc:
                    err(format_api_error(exc))
                    failures += 1
        else:
            objs, _ = await client.list(t.info, "" if all_namespaces else ctx.namespace, label_selector=selector)
        for o in objs:
            outputs.append(await describe_one(client, o))
    if not outputs and not failures:
        err(f"No resources found in {ctx.namespace} namespace.")
    click.echo("\n\n".join(o.rstrip("\n") for o in outputs) + ("\n" if outputs else ""), nl=False)
    return 1 if failures else 0


@click.command("describe")
@click.argument("args", nargs=-1, required=True)
@click.option("-l", "--selector", default="", help="Describe the objects matching this selector.")
@click.option("-A", "--all-namespaces", is_flag=True)
@click.pass_obj
def describe_cmd(ctx: Ctx, args, selector, all_namespaces):
    """Show details of a resource or group of resources, with its events."""
    run(ctx, run_describe, args, selector, all_namespaces)
