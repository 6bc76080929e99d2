"""The bootstrap controllers of the controller manager (Kubernetes'
pkg/controller/bootstrap): the token cleaner and the bootstrap signer.

- TokenCleaner: a bootstrap token Secret (kube-system, type
  bootstrap.kubernetes.io/token) whose expiration has passed is deleted,
  with its UID as precondition; before that its key comes back when it
  expires. (The authenticator already refuses expired tokens; the cleaner
  keeps the Secrets from piling up.)
- BootstrapSigner: keeps kube-public/cluster-info's `jws-kubeconfig-<id>`
  entries equal to the detached JWS of its `kubeconfig` for exactly the
  live tokens with usage-bootstrap-signing. When started with the cluster
  CA and the server address nodes should use (`--cluster-signing-cert-file`
  and `--cluster-info-server`) it first creates cluster-info if it is
  missing — the publish step `kubeadm init` does.

Both re-read their informer caches on every sync and are idempotent; the
signer has a single key (cluster-info) that any token or ConfigMap change
enqueues.
"""
from __future__ import annotations

import time

from machinery import bootstraptoken as bt, clusterinfo, errors, kinds

from controllers.base import Controller

CLUSTER_INFO_KEY = f"{bt.CLUSTER_INFO_NAMESPACE}/{bt.CLUSTER_INFO}"


def _is_token_secret(s) -> bool:
    return s.type == bt.SECRET_TYPE and s.metadata.namespace == bt.NAMESPACE


class TokenCleaner(Controller):
    name = "tokencleaner"

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.secret_inf = factory.informer("Secret", bt.NAMESPACE)
        self.secret_inf.add_handler(self._maybe, lambda old, new: self._maybe(new), None)

    def informers(self):
        return [self.secret_inf]

    def _maybe(self, s) -> None:
        if _is_token_secret(s):
            self.enqueue(s)

    async def sync(self, key: str) -> None:
        s = self.secret_inf.get_by_key(key)
        if s is None or not _is_token_secret(s) or s.metadata.HasField("deletion_timestamp"):
            return
        if not bt.is_expired(s, self.clock()):
            when = bt.expiration(s)
            if when is not None:
                self.queue.add_after(key, when - self.clock() + 0.05)
            return
        try:
            await self.client.delete("Secret", s.metadata.name, s.metadata.namespace, uid=s.metadata.uid)
        except (errors.NotFound, errors.Conflict):
            return
        self.log.info("deleted expired bootstrap token %s", key)


class BootstrapSigner(Controller):
    name = "bootstrapsigner"

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, ca_pem: bytes | None = None,
                 server: str = "", clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.ca_pem, self.server, self.clock = ca_pem, server, clock
        self.secret_inf = factory.informer("Secret", bt.NAMESPACE)
        self.cm_inf = factory.informer("ConfigMap", bt.CLUSTER_INFO_NAMESPACE)
        poke = lambda *_: self.enqueue_key(CLUSTER_INFO_KEY)  # noqa: E731
        for inf in (self.secret_inf, self.cm_inf):
            inf.add_handler(poke, poke, poke)

    def informers(self):
        return [self.secret_inf, self.cm_inf]

    async def run(self) -> None:
        self.enqueue_key(CLUSTER_INFO_KEY)       # publish even when no token or ConfigMap event comes
        await super().run()

    def signing_tokens(self) -> dict[str, str]:
        now, out = self.clock(), {}
        for s in self.secret_inf.list(bt.NAMESPACE):
            held = bt.token_of(s)
            if held and bt.usage(s, "signing") and not bt.is_expired(s, now) \
                    and not s.metadata.HasField("deletion_timestamp"):
                out[held[0]] = held[1]
                when = bt.expiration(s)
                if when is not None:
                    self.queue.add_after(CLUSTER_INFO_KEY, when - now + 0.05)
        return out

    async def sync(self, key: str) -> None:
        cm = self.cm_inf.get(bt.CLUSTER_INFO_NAMESPACE, bt.CLUSTER_INFO)
        if cm is None:
            if self.ca_pem and self.server:
                await self._publish()
            return
        content = cm.data.get(bt.KUBECONFIG_KEY, "")
        if not content:
            return
        want = clusterinfo.signatures(content, self.signing_tokens())
        have = {k: v for k, v in cm.data.items() if k.startswith(bt.JWS_PREFIX)}
        if want == have:
            return
        new = type(cm)()
        new.CopyFrom(cm)
        for k in have:
            del new.data[k]
        new.data.update(want)
        try:
            await self.client.update(new)
        except (errors.NotFound, errors.Conflict):
            self.enqueue_key(key)
            return
        self.log.info("cluster-info signed for %d token(s)", len(want))

    async def _publish(self) -> None:
        cm = kinds.new("ConfigMap")
        cm.metadata.name, cm.metadata.namespace = bt.CLUSTER_INFO, bt.CLUSTER_INFO_NAMESPACE
        cm.data[bt.KUBECONFIG_KEY] = clusterinfo.kubeconfig(self.ca_pem, self.server)
        try:
            await self.client.create(cm)
            self.log.info("published %s for %s", CLUSTER_INFO_KEY, self.server)
        except errors.AlreadyExists:
            pass
