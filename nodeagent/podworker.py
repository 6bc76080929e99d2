"""One worker per pod UID: *when* to sync, terminate, and forget (design §6.4).

The pod worker is the kubelet's pod_workers: it decides when a step runs;
*what* a step does — adopt, pull, sandbox, containers, probes, restarts,
status, termination — is ``PodSync`` (nodeagent/syncpod.py).

Concurrency model
-----------------
The agent calls ``PodWorker.update(pod)`` (or ``update(None)`` when the pod is
gone from the API) from its informer handlers; that only stores the newest
desired state and sets an ``asyncio.Event`` — and only if it matters to the
worker: not for the echo of our own status writes, but for a status someone
else wrote (``PodStatusWriter.foreign``), which the next sync puts right.
The worker's single task (``run()``) loops: take the newest pod, do one
idempotent step, sleep until woken or until the next deadline (a back-off
ending, a resync, activeDeadlineSeconds).  Any step that raises is logged and
retried with a growing delay (0.5 s doubling to 10 s), so each step is
retried until it succeeds.  Helper tasks per running container (an exit
waiter and the probes) never touch the pod's state directly: they record a
result and wake the worker.  So all pod state is mutated by one task.

Phases:

* sync: ``PodSync.sync_pod()``, again and again, at the delay it returns.
  A deletion arriving while an image pull is in flight abandons the pull
  (the pull itself goes on in the image store).
* terminating (deletionTimestamp set, or the pod vanished):
  ``sync_terminating_pod()`` then ``sync_terminated_pod()``, retried as one
  step until both succeed.
* terminated: the task returns; the agent forgets the UID.
"""
from __future__ import annotations

import asyncio
import logging

from machinery.pb import core_pb2
from nodeagent import metrics
from nodeagent.status import ContainerRecord
from nodeagent.syncpod import RESYNC, PodSync

log = logging.getLogger("kctl.nodeagent.podworker")


class PodWorker:
    def __init__(self, agent, pod: core_pb2.Pod, adopted: list | None = None):
        self.uid = pod.metadata.uid
        self.key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.phase = "sync"
        self._wake = asyncio.Event()
        self.done = asyncio.Event()
        self.sync = PodSync(agent, pod, adopted, wake=self.wake)

    @property
    def pod(self) -> core_pb2.Pod:
        """The newest desired state."""
        return self.sync.pod

    @property
    def gone(self) -> bool:
        """The pod vanished from the API (or a status write found it gone)."""
        return self.sync.gone

    @property
    def records(self) -> dict[str, ContainerRecord]:
        return self.sync.records

    # ------------------------------------------------------------ inputs
    def update(self, pod: core_pb2.Pod | None) -> None:
        """Store the newest desired state; wake the worker only if it matters to it
        (not for the echo of our own status writes)."""
        if pod is None:
            self.sync.gone = True
            self._wake.set()
            return
        old, self.sync.pod = self.sync.pod, pod
        if (old is pod or old.spec != pod.spec
                or old.metadata.deletion_timestamp != pod.metadata.deletion_timestamp
                or old.metadata.deletion_grace_period_seconds != pod.metadata.deletion_grace_period_seconds
                or self.sync.status.foreign(pod) is not None):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _deleting(self) -> bool:
        return self.gone or self.pod.metadata.HasField("deletion_timestamp")

    # ------------------------------------------------------------ main loop
    async def run(self) -> None:
        failures = 0
        try:
            while True:
                self._wake.clear()
                delay = RESYNC
                try:
                    if self.phase == "sync" and self._deleting():
                        self.phase = "terminating"
                    if self.phase == "sync":
                        delay = await self._sync_or_abandon_pull()
                    else:
                        await self.sync.sync_terminating_pod()
                        await self.sync.sync_terminated_pod()
                        return
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every step is retried
                    failures += 1
                    delay = min(10.0, 0.5 * 2 ** (failures - 1))
                    metrics.WORKER_ERRORS.labels(self.phase).inc()
                    log.warning("pod %s (%s) %s failed (retry in %.1fs): %s", self.key, self.uid,
                                self.phase, delay, exc, exc_info=failures == 1)
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.01, delay))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.sync.watchers.stop_all()
            self.done.set()

    async def _sync_or_abandon_pull(self) -> float:
        """sync_pod(), but a deletion arriving while an image pull is in flight abandons the
        pull (the pull itself goes on in the image store; nothing else is cancelled)."""
        task = asyncio.create_task(self.sync.sync_pod())
        woken = False
        try:
            while True:
                wake = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait({task, wake}, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    wake.cancel()
                    return task.result()
                self._wake.clear()
                woken = True
                if self._deleting() and self.sync.puller.pulling:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    return 0.0
                if self._deleting():          # not pulling: let the step finish, then terminate
                    return await task
        finally:
            if not task.done():
                task.cancel()
            if woken:
                self._wake.set()              # a wake during the step asks for another round
