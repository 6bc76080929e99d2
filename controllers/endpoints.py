"""The Endpoints controller (Kubernetes' pkg/controller/endpoint).

One Endpoints object per Service with a selector, named like the Service:
ready pods' IPs in `addresses`, the others in `notReadyAddresses`, with
ports resolved per pod (a named targetPort is looked up in that pod's
container ports; a pod without it is left out of that port's subset).
Addresses with the same resolved ports share a subset. Terminating and
finished pods and pods without an IP are left out. The Endpoints object goes
when its Service goes (Services without a selector are left alone: their
Endpoints are the user's).

Handlers enqueue the Service keys a pod change concerns (services in the
pod's namespace whose selector matches its old or new labels), so a readiness
change reaches the Endpoints in one sync. Several workers, one per key.
"""
from __future__ import annotations

from machinery import codec, errors, kinds, selectors
from machinery.informer import BY_NAMESPACE, index_by_namespace, key_of
from machinery.pb import core_pb2, meta_pb2

from controllers import podutil
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


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, client, factory, recorder=None, workers: int = 5):
        super().__init__(client, factory, recorder, workers)
        self.svc_inf = factory.informer("Service")
        self.pod_inf = factory.informer("Pod")
        self.ep_inf = factory.informer("Endpoints")
        for inf in (self.svc_inf, self.pod_inf):
            if BY_NAMESPACE not in inf._indexers:
                inf.add_index(BY_NAMESPACE, index_by_namespace)
        self.svc_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), self.enqueue)
        self.pod_inf.add_handler(self._pod, self._pod_updated, self._pod)
        self.ep_inf.add_handler(None, None, self._ep_deleted)

    def informers(self):
        return [self.svc_inf, self.pod_inf, self.ep_inf]

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

    def _ep_deleted(self, ep) -> None:
        if self.svc_inf.get_by_key(key_of(ep)) is not None:
            self.enqueue(ep)

    def desired_subsets(self, svc) -> list:
        sel = selectors.from_map(svc.spec.selector)
        groups: dict[tuple, tuple[list, list]] = {}
        for pod in self.pod_inf.list(svc.metadata.namespace):
            if not sel.matches(pod.metadata.labels) or not pod.status.pod_ip:
                continue
            if podutil.is_terminating(pod) or pod.status.phase in ("Succeeded", "Failed"):
                continue
            ports = []
            for sp in svc.spec.ports:
                port = resolve_port(pod, sp)
                if port is not None:
                    ports.append((sp.name, port, sp.protocol or "TCP", sp.app_protocol))
            if svc.spec.ports and not ports:
                continue
            addr = core_pb2.EndpointAddress(ip=pod.status.pod_ip, target_ref=meta_pb2.ObjectReference(
                kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid))
            if pod.spec.node_name:
                addr.node_name = pod.spec.node_name
            if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name:   # HOSTNAME.SVC.NS.svc DNS names
                addr.hostname = pod.spec.hostname
            ready, not_ready = groups.setdefault(tuple(sorted(ports)), ([], []))
            (ready if podutil.is_pod_ready(pod) else not_ready).append(addr)
        subsets = []
        for ports, (ready, not_ready) in sorted(groups.items()):
            s = core_pb2.EndpointSubset()
            s.addresses.extend(sorted(ready, key=lambda a: (a.ip, a.target_ref.name)))
            s.not_ready_addresses.extend(sorted(not_ready, key=lambda a: (a.ip, a.target_ref.name)))
            for name, port, proto, app in ports:
                s.ports.add(name=name, port=port, protocol=proto, app_protocol=app)
            subsets.append(s)
        return subsets

    async def sync(self, key: str) -> None:
        ns, name = key.split("/", 1)
        svc = self.svc_inf.get_by_key(key)
        if svc is None:
            if self.ep_inf.get_by_key(key) is not None:
                try:
                    await self.client.delete("Endpoints", name, ns)
                except errors.NotFound:
                    pass
            return
        if not svc.spec.selector:
            return
        subsets = self.desired_subsets(svc)
        current = self.ep_inf.get_by_key(key)
        if current is None:
            ep = kinds.new("Endpoints")
            ep.metadata.name, ep.metadata.namespace = name, ns
            ep.metadata.labels.update(svc.metadata.labels)
            ep.subsets.extend(subsets)
            try:
                await self.client.create(ep)
            except errors.AlreadyExists:
                # not in our cache yet: update it on the next pass
                self.queue.add_after(key, 0.1)
            except errors.Forbidden:
                pass                      # namespace terminating
            return
        if list(current.subsets) == subsets and dict(current.metadata.labels) == dict(svc.metadata.labels):
            return
        new = codec.copy(current)
        del new.subsets[:]
        new.subsets.extend(subsets)
        new.metadata.labels.clear()
        new.metadata.labels.update(svc.metadata.labels)
        await self.client.update(new)
