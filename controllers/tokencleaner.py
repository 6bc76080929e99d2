"""The token cleaner (Kubernetes' pkg/controller/bootstrap/tokencleaner.go):
bootstrap token Secrets in kube-system are deleted once their `expiration`
has passed (an unreadable expiration counts as passed); before that their key
comes back when the time is up. The delete carries the Secret's uid as a
precondition, so a re-created Secret of the same name is never removed on
stale data."""
from __future__ import annotations

import time

from machinery import errors
from machinery.bootstraptoken import NAMESPACE, SECRET_TYPE, expiration

from controllers.base import Controller


class TokenCleaner(Controller):
    name = "tokencleaner"

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.secret_inf = factory.informer("Secret", namespace=NAMESPACE)
        self.secret_inf.add_handler(self._maybe, lambda o, n: self._maybe(n), None)

    def informers(self):
        return [self.secret_inf]

    def _maybe(self, secret) -> None:
        if secret.type == SECRET_TYPE and expiration(secret) is not None:
            self.enqueue(secret)

    async def sync(self, key: str) -> None:
        secret = self.secret_inf.get_by_key(key)
        if secret is None or secret.type != SECRET_TYPE or secret.metadata.HasField("deletion_timestamp"):
            return
        when = expiration(secret)
        if when is None:
            return
        left = when - self.clock()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        try:
            await self.client.delete("Secret", secret.metadata.name, NAMESPACE, uid=secret.metadata.uid)
        except (errors.NotFound, errors.Conflict):
            return
        self.log.info("%s: expired bootstrap token deleted", key)
