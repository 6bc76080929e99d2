"""What the Endpoints and EndpointSlice controllers share: Service and Pod
informers whose handlers enqueue the Service keys a pod change concerns, and
the per-pod rules both apply (Kubernetes' pkg/controller/util/endpoint).

A pod change enqueues every Service in the pod's namespace whose selector
matches its new labels, or its old ones when the labels changed, so a
readiness or deletion change reaches the Endpoints and the slices in one
sync. The subclasses write their objects in `sync(key)`.
"""
from __future__ import annotations

from machinery import selectors
from machinery.informer import BY_NAMESPACE, index_by_namespace, key_of

from controllers.base import Controller


def resolve_port(pod, sp) -> int | None:
    """FindPort: the container port a ServicePort targets on this pod."""
    tp = sp.target_port
    which = tp.WhichOneof("value") if sp.HasField("target_port") else None
    proto = sp.protocol or "TCP"
    if which == "str_val" and tp.str_val:
        for c in pod.spec.containers:
            for p in c.ports:
                if p.name == tp.str_val and (p.protocol or "TCP") == proto:
                    return p.container_port
        return None
    if which == "int_val" and tp.int_val:
        return tp.int_val
    return sp.port


def endpoint_hostname(pod, svc) -> str:
    """ShouldSetHostname: a pod with `hostname` whose `subdomain` names this Service (same namespace)."""
    if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name \
            and pod.metadata.namespace == svc.metadata.namespace:
        return pod.spec.hostname
    return ""


def resolved_ports(pod, svc) -> list[tuple[str, int, str, str]]:
    """(name, port, protocol, appProtocol) of each service port this pod serves, sorted."""
    out = []
    for sp in svc.spec.ports:
        port = resolve_port(pod, sp)
        if port is not None:
            out.append((sp.name, port, sp.protocol or "TCP", sp.app_protocol))
    return sorted(out)


class ServicePodController(Controller):
    """A controller keyed by Service whose objects follow the Service's pods."""

    def __init__(self, client, factory, recorder=None, workers: int = 5):
        super().__init__(client, factory, recorder, workers)
        self.svc_inf = factory.informer("Service")
        self.pod_inf = factory.informer("Pod")
        for inf in (self.svc_inf, self.pod_inf):
            if BY_NAMESPACE not in inf._indexers:
                inf.add_index(BY_NAMESPACE, index_by_namespace)
        self.svc_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), self.enqueue)
        self.pod_inf.add_handler(self._pod, self._pod_updated, self._pod)

    def _services_for(self, pod, labels) -> list[str]:
        out = []
        for svc in self.svc_inf.list(pod.metadata.namespace):
            if svc.spec.selector and selectors.from_map(svc.spec.selector).matches(labels):
                out.append(key_of(svc))
        return out

    def _pod(self, pod) -> None:
        for k in self._services_for(pod, pod.metadata.labels):
            self.queue.add(k)

    def _pod_updated(self, old, pod) -> None:
        keys = set(self._services_for(pod, pod.metadata.labels))
        if old.metadata.labels != pod.metadata.labels:
            keys |= set(self._services_for(old, old.metadata.labels))
        for k in keys:
            self.queue.add(k)

    def selected_pods(self, svc) -> list:
        """The Service's pods that have an IP and have not finished (terminating ones included)."""
        sel = selectors.from_map(svc.spec.selector)
        return [pod for pod in self.pod_inf.list(svc.metadata.namespace)
                if sel.matches(pod.metadata.labels) and pod.status.pod_ip
                and pod.status.phase not in ("Succeeded", "Failed")]
