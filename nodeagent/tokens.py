"""ServiceAccount tokens for projected volumes — the kubelet's token manager
(pkg/kubelet/token/token_manager.go).

`PodTokens.get(pod, projection)` returns the token of a projected
`serviceAccountToken` source: asked from the apiserver's
`serviceaccounts/token` (a TokenRequest for the pod's account with the
source's audience and expirationSeconds, bound to the pod by name and uid),
cached, and asked again once 80 % of its lifetime or 24 hours have passed
(minus up to 10 s of jitter), as the kubelet does. When the token is due,
the pod's worker is woken (`wake`), so its next sync rewrites the volume
with the atomic `..data` swap. A refresh that fails while the old token is
still valid keeps the old one (logged); a first request that fails is a
VolumeSetupError (`failed to fetch token: ...`): the pod waits in
ContainerCreating with a FailedMount event, and is retried on its next sync.

One PodTokens per pod (tokens are bound to it); `close()` forgets them and
cancels the wake-up timers.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time

from machinery import errors
from machinery.pb import serviceaccount_pb2
from nodeagent.errors import VolumeSetupError

log = logging.getLogger("kctl.nodeagent.tokens")

MAX_TTL = 24 * 3600
MAX_JITTER = 10.0


def refresh_at(expires: float, expiration_seconds: int, jitter: float) -> float:
    """When a token must be asked again: at 80 % of its life, or 24 h after issue, minus jitter."""
    issued = expires - expiration_seconds
    return min(issued + MAX_TTL, expires - expiration_seconds * 20 // 100) - jitter


def key_of(projection) -> tuple[str, int]:
    return projection.audience, projection.expiration_seconds


class PodTokens:
    def __init__(self, client, wake=None, *, clock=time.time, jitter=None):
        self.client, self.wake, self.clock = client, wake, clock
        self.jitter = jitter if jitter is not None else (lambda: random.uniform(0, MAX_JITTER))
        self._cache: dict[tuple[str, int], tuple[str, float, float]] = {}   # key -> (token, expires, refresh at)
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}

    async def get(self, pod, projection) -> bytes:
        key = key_of(projection)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[2]:
            return cached[0].encode()
        try:
            token, expires = await self._request(pod, projection)
        except errors.ApiError as exc:
            if cached is not None and now < cached[1]:
                log.warning("pod %s/%s: token refresh failed, keeping the current token: %s",
                            pod.metadata.namespace, pod.metadata.name, exc.message)
                return cached[0].encode()
            raise VolumeSetupError(f"failed to fetch token: {exc.message}") from exc
        when = refresh_at(expires, projection.expiration_seconds, self.jitter())
        self._cache[key] = (token, expires, when)
        self._schedule(key, when - now)
        return token.encode()

    async def _request(self, pod, projection) -> tuple[str, float]:
        tr = serviceaccount_pb2.TokenRequest(api_version="authentication.k8s.io/v1", kind="TokenRequest")
        if projection.audience:
            tr.spec.audiences.append(projection.audience)
        tr.spec.expiration_seconds = projection.expiration_seconds
        ref = tr.spec.bound_object_ref
        ref.kind, ref.api_version, ref.name, ref.uid = "Pod", "v1", pod.metadata.name, pod.metadata.uid
        out = await self.client.create_token(pod.metadata.namespace, pod.spec.service_account_name or "default", tr)
        return out.status.token, float(out.status.expiration_timestamp.seconds)

    def _schedule(self, key, delay: float) -> None:
        if self.wake is None:
            return
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), self.wake)

    def close(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        self._cache.clear()
