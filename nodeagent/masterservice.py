"""The `default/kubernetes` Service as env vars, from a watch — the kubelet's
service lister (pkg/kubelet/kubelet_pods.go ``getServiceEnvVarMap``), never a
GET per pod.

Every container gets ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the
Docker-link ``KUBERNETES_PORT*`` variables (nodeagent/envvars.py
``service_env``), which in-cluster clients read to find the API.  One
``MasterServiceEnv`` per agent keeps that Service in an informer (namespace
``default``, field selector ``metadata.name=kubernetes``: one object, never
every Service of the cluster), and ``env()`` answers from its cache, so a
pod start costs the apiserver nothing here; a re-created or changed Service
(new ClusterIP or port) reaches every container started afterwards, as in
the kubelet (running containers keep the env they started with).

The agent starts it at agent start (``start()``, as the kubelet starts its
Service informer when it is built), so the first list is done before the
first pod needs it; ``env()`` starts it too when nobody did (a pod worker
driven without a running agent); ``close()`` stops it with the agent.

``env()`` is ``{}`` when the Service does not exist (the container starts
without the variables, as before).  Before the first list is in the cache it
waits for it, until ``SYNC_TIMEOUT`` after the informer started (the
kubelet's ``serviceHasSynced`` check, which refuses to build env without
it); past that it returns None at once, without waiting — so pods do not
each block a sync step while the list keeps failing — and building the
container's env fails with the kubelet's ``services have not yet been read
at least once, cannot construct envvars`` (CreateContainerConfigError and a
``Failed`` event; the pod worker tries again on a later step, and the
informer keeps retrying its list with back-off).
"""
from __future__ import annotations

import asyncio
import logging

from machinery.informer import Informer
from machinery.pb import core_pb2
from nodeagent.envvars import service_env

log = logging.getLogger("kctl.nodeagent.masterservice")

NAMESPACE, NAME = "default", "kubernetes"
SYNC_TIMEOUT = 10.0          # the bound configwatch.py puts on a new watch's first list, too


class MasterServiceEnv:
    """The `default/kubernetes` Service's env vars from an informer's cache (see module doc)."""

    def __init__(self, client, sync_timeout: float = SYNC_TIMEOUT):
        self.client = client
        self.sync_timeout = sync_timeout
        self.informer: Informer | None = None
        self._task: asyncio.Task | None = None
        self._deadline = 0.0                                      # loop time: stop waiting for the list
        self._warned = False
        self._memo: tuple[object, dict[str, str]] = (None, {})   # (cached Service, its env)

    def start(self) -> None:
        """Start the informer (again after close()); a no-op while it runs."""
        if self._task is not None:
            return
        self.informer = Informer(self.client, core_pb2.Service, namespace=NAMESPACE,
                                 field_selector=f"metadata.name={NAME}")
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.sync_timeout
        self._task = loop.create_task(self.informer.run(), name=f"watch-Service-{NAMESPACE}/{NAME}")
        self._task.add_done_callback(_log_end)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def env(self) -> dict[str, str] | None:
        """The variables (shared: read-only), {} without the Service, None while the cache
        was not filled within sync_timeout of the informer's start."""
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
                    log.warning("service %s/%s not listed within %gs of the watch's start; containers "
                                "wait for it", NAMESPACE, NAME, self.sync_timeout)
                return None
        svc = informer.get(NAMESPACE, NAME)
        if svc is None:
            return {}
        if self._memo[0] is not svc:          # the cache replaces the object on every change
            self._memo = (svc, service_env(svc))
        return self._memo[1]


def _log_end(t: asyncio.Task) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("%s ended: %s", t.get_name(), t.exception())
