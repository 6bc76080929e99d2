"""One pod's volumes and referenced objects, for its pod worker (nodeagent/syncpod.py).

``PodVolumes.sync(pod, pod_dir, pod_ip)`` runs on every sync step: it
gathers the ConfigMaps/Secrets the pod refers to (watched, so a change
wakes the worker: nodeagent/configwatch.py), the ServiceAccount tokens of
its projected volumes (nodeagent/tokens.py: requested, cached, refreshed
with a wake-up), the Services' env vars (the `kubernetes` one, and the
namespace's unless enableServiceLinks is false: from the agent's watch of
Services, nodeagent/serviceenv.py) and its claims' volume paths
(read from the API until every claim is bound, then kept),
then sets the volumes up (nodeagent/volumes.py; hollow nodes write no
files but reach the same verdicts).  It returns the ``Sources`` the containers' env and mounts
are built from, or None while a volume cannot be set up: then ``error``
holds the kubelet's message, recorded once per message as the kubelet's
``FailedMount`` event (``MountVolume.SetUp failed for volume "v" : configmap
"x" not found``), and containers not yet started wait in ContainerCreating.
Env references are resolved later, per container (CreateContainerConfigError).
Every ``USAGE_INTERVAL`` it measures the disk emptyDirs that have a
``sizeLimit``; one over it sets ``evicted`` to the kubelet's eviction
message (``Usage of EmptyDir volume "x" exceeds the limit "1Mi". ``), and
the pod worker fails the pod with reason Evicted (memory emptyDirs cannot
exceed theirs: the tmpfs is that size).
``close(pod_dir)`` stops the pod's watches and unmounts the pod's tmpfs volumes.
"""
from __future__ import annotations

import logging
import time

from machinery.pb import core_pb2
from nodeagent import volumes
from nodeagent.configwatch import ConfigWatch
from nodeagent.serviceenv import ServiceEnv
from nodeagent.envvars import Sources
from nodeagent.errors import VolumeSetupError
from nodeagent.tokens import PodTokens, key_of

log = logging.getLogger("kctl.nodeagent.volumes")

USAGE_INTERVAL = 10.0          # seconds between measurements of disk emptyDirs with a sizeLimit


class PodVolumes:
    def __init__(self, agent, uid: str, wake):
        self.agent = agent
        self.uid = uid
        self.wake = wake
        watch = getattr(agent, "config_watch", None)
        self.watch: ConfigWatch = watch if watch is not None else ConfigWatch(agent.client)
        self.error = ""
        self.claims: dict | None = None      # a bound claim's volume does not change: read once
        self.evicted = ""                    # the eviction message once an emptyDir exceeded its sizeLimit
        self._next_usage_check = 0.0
        self.tokens = PodTokens(agent.client, wake)   # projected ServiceAccount tokens, refreshed
        services = getattr(agent, "service_env", None)    # the agent's one watch of Services
        self._own_services = services is None              # (an agent-less worker watches for itself)
        self.services: ServiceEnv = services if services is not None else ServiceEnv(agent.client)

    async def sync(self, pod: core_pb2.Pod, pod_dir: str, pod_ip: str) -> Sources | None:
        try:
            sources = await self.watch.gather(pod, self.wake)
            if self.claims is None and any(v.HasField("persistent_volume_claim") for v in pod.spec.volumes):
                self.claims = await volumes.claim_paths(self.agent.client, pod)
            sources.claims = self.claims or {}
            links = not pod.spec.HasField("enable_service_links") or pod.spec.enable_service_links
            sources.service_env = await self.services.env(pod.metadata.namespace, links)   # the watch's cache
            for v in pod.spec.volumes:
                for p in v.projected.sources:
                    if p.HasField("service_account_token"):
                        sources.tokens[key_of(p.service_account_token)] = await self.tokens.get(
                            pod, p.service_account_token)
            if self.agent.fake:                  # hollow: no files, the same verdicts
                volumes.check_payloads(pod, sources, self.agent.node_ip, pod_ip)
            else:
                changed = volumes.setup_volumes(pod, pod_dir, sources, self.agent.node_ip, pod_ip)
                if not self.evicted and time.monotonic() >= self._next_usage_check:
                    self._next_usage_check = time.monotonic() + USAGE_INTERVAL
                    self.evicted = volumes.exceeded_limit(pod, pod_dir)
                if changed:
                    log.info("pod %s/%s: volumes %s updated", pod.metadata.namespace, pod.metadata.name,
                             ", ".join(changed))
        except VolumeSetupError as exc:
            message = str(exc)
            if message != self.error:
                self.agent.recorder.event(pod, "Warning", "FailedMount",
                                          f'MountVolume.SetUp failed for volume "{exc.volume}" '
                                          f": {message}")
            self.error = message
            return None
        self.error = ""
        return sources

    def close(self, pod_dir: str) -> None:
        self.watch.forget(self.uid)
        self.tokens.close()
        if self._own_services:
            self.services.close()
        if not self.agent.fake:
            volumes.teardown(pod_dir)
