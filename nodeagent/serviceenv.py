"""Services as a container's env vars, from one watch per agent — the
kubelet's service lister (pkg/kubelet/kubelet_pods.go ``getServiceEnvVarMap``),
never a request per pod.

Every container gets the `default/kubernetes` Service's variables
(``KUBERNETES_SERVICE_HOST``/``_PORT`` and the Docker-link
``KUBERNETES_PORT*`` ones: what in-cluster clients read to find the API),
and, unless its pod says ``enableServiceLinks: false``, those of every
other Service of the pod's namespace that has a ClusterIP (not headless), as
the kubelet injects them (nodeagent/envvars.py ``service_env`` makes one
Service's).  One ``ServiceEnv`` per agent keeps every Service in an
informer, which the agent's service proxy shares (nodeagent/proxy.py), and
``env()`` answers from its cache, so a pod start costs the apiserver
nothing here; a Service created or changed later reaches the containers
started afterwards, as in the kubelet (running containers keep the env they
started with, which is why Kubernetes' docs create a Service before its
clients).

The agent starts it at agent start (``start()``, as the kubelet starts its
Service informer when it is built), so the first list is done before the
first pod needs it; ``env()`` starts it too when nobody did (a pod worker
driven without a running agent); ``close()`` stops it with the agent.

Before the first list is in the cache ``env()`` waits for it, until
``SYNC_TIMEOUT`` after the informer started (the kubelet's
``serviceHasSynced`` check, which refuses to build env without it); past
that it returns None at once, without waiting — so pods do not each block a
sync step while the list keeps failing — and building the container's env
fails with the kubelet's ``services have not yet been read at least once,
cannot construct envvars`` (CreateContainerConfigError and a ``Failed``
event; the pod worker tries again on a later step, and the informer keeps
retrying its list with back-off).
"""
from __future__ import annotations

import asyncio
import logging
import operator

from machinery.informer import BY_NAMESPACE, Informer
from machinery.pb import core_pb2
from nodeagent.envvars import service_env

log = logging.getLogger("kctl.nodeagent.serviceenv")

MASTER_NAMESPACE, MASTER_NAME = "default", "kubernetes"
SYNC_TIMEOUT = 10.0          # the bound configwatch.py puts on a new watch's first list, too
WATCH_TASK = "watch-Service"


def _namespace(obj) -> list[str]:
    return [obj.metadata.namespace]


class ServiceEnv:
    """Services' env vars from an informer's cache (see module doc)."""

    def __init__(self, client, sync_timeout: float = SYNC_TIMEOUT):
        self.client = client
        self.sync_timeout = sync_timeout
        self.informer = self._new_informer()
        self._task: asyncio.Task | None = None
        self._deadline = 0.0                                      # loop time: stop waiting for the list
        self._warned = False
        self._memo: dict[tuple[str, bool], tuple[list, dict[str, str]]] = {}   # -> (the Services, their env)

    def _new_informer(self) -> Informer:
        informer = Informer(self.client, core_pb2.Service)
        informer.add_index(BY_NAMESPACE, _namespace)
        return informer

    def start(self) -> None:
        """Start the informer (again after close()); a no-op while it runs."""
        if self._task is not None:
            return
        if self.informer.has_synced():               # it ran before: a fresh cache
            self.informer = self._new_informer()
            self._memo.clear()
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.sync_timeout
        self._task = loop.create_task(self.informer.run(), name=WATCH_TASK)
        self._task.add_done_callback(_log_end)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def env(self, namespace: str = MASTER_NAMESPACE, links: bool = True) -> dict[str, str] | None:
        """The variables for a pod of `namespace` (shared: read-only): the
        `kubernetes` Service's, and with `links` (the pod's enableServiceLinks)
        the namespace's Services'; None while the cache was not filled within
        sync_timeout of the informer's start."""
        self.start()
        informer = self.informer
        if not informer.has_synced():
            left = self._deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(informer.wait_synced(), left)
            except asyncio.TimeoutError:
                if not self._warned:
                    self._warned = True
                    log.warning("services not listed within %gs of the watch's start; containers wait "
                                "for them", self.sync_timeout)
                return None
        master = informer.get(MASTER_NAMESPACE, MASTER_NAME)
        chosen = [master] if master is not None else []      # service_env: {} for one without a ClusterIP
        if links:
            chosen += sorted((s for s in informer.by_index(BY_NAMESPACE, namespace)
                              if s is not master), key=lambda s: s.metadata.name)
        memo = self._memo.get((namespace, links))      # the cache replaces an object on every change
        if memo is None or len(memo[0]) != len(chosen) or not all(map(operator.is_, memo[0], chosen)):
            env: dict[str, str] = {}
            for svc in chosen:
                env.update(service_env(svc))
            memo = self._memo[(namespace, links)] = (chosen, env)
        return memo[1]


def _log_end(t: asyncio.Task) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("%s ended: %s", t.get_name(), t.exception())
