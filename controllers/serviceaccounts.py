"""Two per-namespace controllers of Kubernetes' ServiceAccount machinery:

* `ServiceAccountsController` (pkg/controller/serviceaccount: the
  serviceaccounts-controller) keeps a ServiceAccount `default` in every
  active namespace: created when the namespace appears, re-created when
  deleted.
* `RootCACertPublisher` (pkg/controller/certificates/rootcacertpublisher)
  keeps the ConfigMap `kube-root-ca.crt` in every active namespace holding
  the cluster CA (`ca.crt`, from the manager's `--root-ca-file`; empty until
  the cluster has a PKI) — what the projected `kube-api-access-*` volume
  mounts as ca.crt. A ConfigMap someone changed is put back.

Both key on the namespace name; sync re-reads the caches and is idempotent.
A namespace being deleted is left alone (the apiserver would refuse the
create anyway).
"""
from __future__ import annotations

from machinery import codec, errors, kinds

from controllers.base import Controller

DEFAULT = "default"
ROOT_CA = "kube-root-ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
               "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
               "guaranteed across distributions of Kubernetes clusters.")


class _PerNamespace(Controller):
    """Keeps one object named `object_name` of `kind` in every active namespace."""
    kind, object_name = "", ""

    def __init__(self, client, factory, recorder=None, workers: int = 1):
        super().__init__(client, factory, recorder, workers)
        self.ns_inf = factory.informer("Namespace")
        self.ns_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), None)
        self.obj_inf = factory.informer(self.kind)
        self.obj_inf.add_handler(None, lambda o, n: self._mine(n), self._mine)

    def informers(self):
        return [self.ns_inf, self.obj_inf]

    def _mine(self, obj) -> None:
        if obj.metadata.name == self.object_name:
            self.enqueue_key(obj.metadata.namespace)

    def desired(self, namespace: str):
        raise NotImplementedError

    def differs(self, have, want) -> bool:
        return False

    async def sync(self, key: str) -> None:
        ns = self.ns_inf.get_by_key(key)
        if ns is None or ns.metadata.HasField("deletion_timestamp") or ns.status.phase == "Terminating":
            return
        have = self.obj_inf.get(key, self.object_name)
        want = self.desired(key)
        try:
            if have is None:
                await self.client.create(want)
                self.log.info("%s/%s: created", key, self.object_name)
            elif self.differs(have, want):
                fixed = codec.copy(have)
                self.fix(fixed, want)
                await self.client.update(fixed)
                self.log.info("%s/%s: updated", key, self.object_name)
        except errors.AlreadyExists:
            return                     # the cache is behind; its event brings us back
        except errors.NotFound:
            return                     # the namespace went away meanwhile
        except errors.Forbidden as exc:
            if "being terminated" not in exc.message:
                raise                  # e.g. RBAC: logged and retried by the queue, never silent
            return                     # the namespace is terminating

    def fix(self, have, want) -> None:
        pass


class ServiceAccountsController(_PerNamespace):
    name = "serviceaccount"
    kind, object_name = "ServiceAccount", DEFAULT

    def desired(self, namespace: str):
        sa = kinds.new("ServiceAccount")
        sa.metadata.name, sa.metadata.namespace = DEFAULT, namespace
        return sa


class RootCACertPublisher(_PerNamespace):
    name = "root-ca-cert-publisher"
    kind, object_name = "ConfigMap", ROOT_CA

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, root_ca: str = ""):
        super().__init__(client, factory, recorder, workers)
        self.root_ca = root_ca

    def desired(self, namespace: str):
        cm = kinds.new("ConfigMap")
        cm.metadata.name, cm.metadata.namespace = ROOT_CA, namespace
        cm.metadata.annotations["kubernetes.io/description"] = DESCRIPTION
        cm.data["ca.crt"] = self.root_ca
        return cm

    def differs(self, have, want) -> bool:
        return dict(have.data) != dict(want.data) or bool(have.binary_data) or \
            have.metadata.annotations.get("kubernetes.io/description") != DESCRIPTION

    def fix(self, have, want) -> None:
        have.data.clear()
        have.data.update(want.data)
        have.binary_data.clear()
        have.metadata.annotations["kubernetes.io/description"] = DESCRIPTION
