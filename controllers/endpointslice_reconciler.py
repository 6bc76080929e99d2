"""The EndpointSlice reconciler: desired endpoints + existing slices -> the writes (pure).

After Kubernetes' staging/src/k8s.io/endpointslice/reconciler.go, reduced to
what kctl serves (IPv4 only, no topology hints):

* ``desired(svc, pods)``: one ``Endpoint`` per pod with an IP that has not
  finished, terminating pods included, grouped by the pod's resolved port set
  (a named targetPort resolves per pod, so pods can land in different
  groups). Conditions as the EndpointSlice controller sets them:
  ``serving`` = pod Ready, ``terminating`` = deletionTimestamp set,
  ``ready`` = serving and not terminating. ``hostname`` when the pod's
  ``subdomain`` names the Service, ``nodeName``, ``targetRef`` to the pod.
* ``reconcile(...)``: per port set, existing slices keep the endpoints that
  are still wanted (updated in place when their conditions changed) and drop
  the others; new endpoints first fill slices that are being updated anyway,
  then the fullest slice with room, then new slices of at most
  ``max_per_slice``. Slices of port sets no longer wanted and slices left
  empty are deleted, except that a Service with no endpoints at all keeps
  (or gets) one placeholder slice without ports, as Kubernetes'.

Slices are identified by their ports; endpoints by their address. The
mirroring controller (controllers/endpointslicemirroring.py) uses the same
reconciler with its own managed-by value and no placeholder.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from machinery import codec, kinds
from machinery.pb import discovery_pb2, meta_pb2

from controllers import podutil
from controllers.svcpods import endpoint_hostname, resolved_ports

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100

PortKey = tuple[tuple[str, int, str, str], ...]   # (name, port, protocol, appProtocol), sorted


def pod_endpoint(pod, svc) -> discovery_pb2.Endpoint:
    serving = podutil.is_pod_ready(pod)
    terminating = podutil.is_terminating(pod)
    ep = discovery_pb2.Endpoint(addresses=[pod.status.pod_ip])
    ep.conditions.ready = serving and not terminating
    ep.conditions.serving = serving
    ep.conditions.terminating = terminating
    hostname = endpoint_hostname(pod, svc)
    if hostname:
        ep.hostname = hostname
    if pod.spec.node_name:
        ep.node_name = pod.spec.node_name
    ep.target_ref.CopyFrom(meta_pb2.ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                                                     name=pod.metadata.name, uid=pod.metadata.uid))
    return ep


def desired(svc, pods) -> dict[PortKey, dict[str, discovery_pb2.Endpoint]]:
    """Endpoints by port set, then by address (see the module docstring)."""
    out: dict[PortKey, dict[str, discovery_pb2.Endpoint]] = {}
    for pod in pods:
        ports = tuple(resolved_ports(pod, svc))
        if svc.spec.ports and not ports:
            continue
        out.setdefault(ports, {})[pod.status.pod_ip] = pod_endpoint(pod, svc)
    return out


def port_key(slice_) -> PortKey:
    return tuple(sorted((p.name, p.port, p.protocol or "TCP", p.app_protocol) for p in slice_.ports))


def slice_labels(svc, managed_by: str = CONTROLLER_NAME) -> dict[str, str]:
    labels = {k: v for k, v in svc.metadata.labels.items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)}
    labels[SERVICE_NAME_LABEL] = svc.metadata.name
    labels[MANAGED_BY_LABEL] = managed_by
    if svc.spec.cluster_ip == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def new_slice(svc, ports: PortKey, managed_by: str = CONTROLLER_NAME) -> discovery_pb2.EndpointSlice:
    es = kinds.new("EndpointSlice")
    es.metadata.generate_name = svc.metadata.name[:57] + "-"
    es.metadata.namespace = svc.metadata.namespace
    es.metadata.labels.update(slice_labels(svc, managed_by))
    es.metadata.owner_references.append(podutil.owner_ref_for(svc))
    es.address_type = "IPv4"
    for name, port, proto, app in ports:
        p = es.ports.add(name=name, port=port, protocol=proto)
        if app:
            p.app_protocol = app
    return es


@dataclass
class Plan:
    create: list = field(default_factory=list)
    update: list = field(default_factory=list)
    delete: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def _fill(slices: list, todo: list, max_per_slice: int) -> None:
    for es in slices:
        while todo and len(es.endpoints) < max_per_slice:
            es.endpoints.append(todo.pop(0))


def reconcile(svc, existing: list, want: dict[PortKey, dict[str, discovery_pb2.Endpoint]],
              max_per_slice: int = MAX_ENDPOINTS_PER_SLICE, *, managed_by: str = CONTROLLER_NAME,
              placeholder: bool = True) -> Plan:
    """The creates, updates (new objects) and deletes that make EXISTING (this service's slices
    managed by MANAGED_BY) match WANT; see the module docstring.  PLACEHOLDER: keep one empty
    slice when nothing is wanted (the EndpointSlice controller does, the mirroring one does not)."""
    plan = Plan()
    labels = slice_labels(svc, managed_by)
    by_key: dict[PortKey, list] = {}
    for es in sorted(existing, key=lambda s: s.metadata.name):
        by_key.setdefault(port_key(es), []).append(es)
    total = sum(len(eps) for eps in want.values())
    for key in sorted(set(by_key) | set(want)):
        eps = want.get(key, {})
        placed, changed, unchanged = set(), [], []
        for es in by_key.get(key, []):
            new = codec.copy(es)
            del new.endpoints[:]
            for ep in es.endpoints:
                addr = ep.addresses[0] if ep.addresses else ""
                if addr in eps and addr not in placed:
                    new.endpoints.append(eps[addr])
                    placed.add(addr)
            if dict(new.metadata.labels) != labels:
                new.metadata.labels.clear()
                new.metadata.labels.update(labels)
            (unchanged if new == es else changed).append(new)
        todo = [ep for addr, ep in sorted(eps.items()) if addr not in placed]
        _fill(changed, todo, max_per_slice)
        if todo:          # the fullest unchanged slice with room takes more (k8s fills one, closest to full)
            room = sorted((es for es in unchanged if len(es.endpoints) < max_per_slice),
                          key=lambda es: -len(es.endpoints))[:1]
            _fill(room, todo, max_per_slice)
            changed += room
        while todo:
            es = new_slice(svc, key, managed_by)
            _fill([es], todo, max_per_slice)
            plan.create.append(es)
        for es in changed:
            (plan.update if es.endpoints else plan.delete).append(es)
        plan.delete += [es for es in unchanged if not es.endpoints]
    if total == 0 and placeholder:     # nothing to serve: one placeholder slice without ports stays (or comes)
        keep = next((es for es in plan.delete if not es.ports), None)
        if keep is None:
            plan.create.append(new_slice(svc, (), managed_by))
        else:
            plan.delete.remove(keep)
            if keep not in existing:
                plan.update.append(keep)
    return plan
