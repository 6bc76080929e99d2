"""Writing a pod's status to the API, once per change (the kubelet's status manager).

One ``PodStatusWriter`` per pod worker.  ``write`` builds the status from the
worker's container records (nodeagent/status.py) and writes it with
``update_status`` only if it changed from our last write — or if someone else
rewrote it since: the node lifecycle controller marks pods of a silent node
Ready=False; when the agent is heard again, the pod informer delivers that
foreign status (``foreign``), the worker wakes, and the computed status —
compared with the cached one ignoring condition times — is written back.
The write carries no resourceVersion (the status is ours alone), so it never
conflicts; the resourceVersion it produces tells the echo of our own write
apart from a later foreign one.

It also observes the pod start latency metric (first sight → all containers
running), once per pod.  Called only from the worker's task: no locking.
"""
from __future__ import annotations

import logging
import time

from machinery import errors
from machinery.pb import core_pb2
from nodeagent import metrics, status as pstatus
from nodeagent.status import ContainerRecord

log = logging.getLogger("kctl.nodeagent.podworker")


class PodStatusWriter:
    def __init__(self, client, node_ip: str, pod: core_pb2.Pod) -> None:
        self.client = client
        self.node_ip = node_ip
        self.key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.first_seen = time.time()
        self.start_latency_observed = False
        self.last_written: core_pb2.PodStatus | None = None
        self.written_rv = ""                       # resourceVersion our last status write produced
        self.api_status: core_pb2.PodStatus | None = pod.status if pod.HasField("status") else None

    def known(self) -> core_pb2.PodStatus | None:
        """The last status we wrote, else (after an agent restart) what the API had."""
        return self.last_written or self.api_status

    def foreign(self, pod: core_pb2.Pod) -> core_pb2.PodStatus | None:
        """The cached pod's status if someone else wrote it after our last write and it differs
        from what we wrote (ignoring condition times); else None."""
        if self.last_written is None or not self.written_rv:
            return None
        rv = pod.metadata.resource_version
        if rv == self.written_rv or (rv.isdigit() and self.written_rv.isdigit()
                                     and int(rv) < int(self.written_rv)):
            return None          # our own write's echo, or an event from before it
        if pstatus.same_status(pod.status, self.last_written):
            return None
        return pod.status

    async def write(self, pod: core_pb2.Pod, recs: list[ContainerRecord], *, pod_ip: str | None,
                    message: str = "", reason: str = "", failed: bool = False, **init) -> bool:
        """Write the status these records give if it changed (or was changed by someone else).

        pod_ip: the sandbox's IP, None without a sandbox (then the API's is kept).
        Returns False if the pod is gone from the API (NotFound), else True."""
        foreign = self.foreign(pod)
        new = pstatus.build_status(pod, recs, host_ip=self.node_ip,
                                   pod_ip=pod_ip if pod_ip is not None else
                                   (self.api_status.pod_ip if self.api_status else ""),
                                   start_time=self.first_seen,
                                   old=foreign or self.last_written or self.api_status,
                                   message=message, reason=reason, failed=failed, **init)
        if new.phase == "Running" and not self.start_latency_observed and all(
                r.state is not None and r.state.status == pstatus.RUNNING for r in recs):
            self.start_latency_observed = True
            metrics.POD_START_LATENCY.observe(time.time() - self.first_seen)
        if not pstatus.status_changed(self.last_written, new) and (
                foreign is None or pstatus.same_status(foreign, new)):
            return True
        if foreign is not None:
            log.info("pod %s: status was changed by someone else (Ready %s); writing ours again", self.key,
                     next((c.status for c in foreign.conditions if c.type == "Ready"), "?"))
        obj = core_pb2.Pod()
        obj.metadata.CopyFrom(pod.metadata)
        obj.metadata.resource_version = ""          # status is ours alone: no optimistic lock
        obj.status.CopyFrom(new)
        try:
            t0 = time.perf_counter()
            written = await self.client.update_status(obj)
            log.debug("pod %s: status %s written in %.1f ms (%.1f ms after first sight)", self.key, new.phase,
                      (time.perf_counter() - t0) * 1e3, (time.time() - self.first_seen) * 1e3)
        except errors.NotFound:
            metrics.STATUS_WRITES.labels("notfound").inc()
            return False
        except errors.ApiError:
            metrics.STATUS_WRITES.labels("error").inc()
            raise
        metrics.STATUS_WRITES.labels("ok").inc()
        self.last_written = new
        self.written_rv = getattr(getattr(written, "metadata", None), "resource_version", "") or ""
        return True
