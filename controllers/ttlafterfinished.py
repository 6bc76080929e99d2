"""The TTL-after-finished controller (Kubernetes' pkg/controller/ttlafterfinished).

A Job with spec.ttlSecondsAfterFinished that has finished (a Complete or
Failed condition True) is deleted, with foreground propagation so its pods
go first, once `finish time + ttl` has passed; before that its key comes back
when the time is up. The finish time is the terminal condition's
lastTransitionTime. Right before deleting, the Job is read again from the
apiserver (a changed TTL or a re-created Job of the same name must not be
deleted on stale data), and the delete carries the Job's UID as precondition.
"""
from __future__ import annotations

import time

from machinery import errors

from controllers.base import Controller
from controllers.job_util import FINISHED_TYPES


def expires_at(job) -> float | None:
    """When the job may be deleted; None when it has no TTL or has not finished."""
    if not job.spec.HasField("ttl_seconds_after_finished"):
        return None
    done = [c.last_transition_time.seconds for c in job.status.conditions
            if c.type in FINISHED_TYPES and c.status == "True"]
    return float(max(done)) + job.spec.ttl_seconds_after_finished if done else None


class TTLAfterFinishedController(Controller):
    name = "ttlafterfinished"

    def __init__(self, client, factory, recorder=None, workers: int = 2, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.job_inf = factory.informer("Job")
        self.job_inf.add_handler(self._maybe, lambda old, new: self._maybe(new), None)

    def informers(self):
        return [self.job_inf]

    def _maybe(self, job) -> None:
        if expires_at(job) is not None and not job.metadata.HasField("deletion_timestamp"):
            self.enqueue(job)

    async def sync(self, key: str) -> None:
        job = self.job_inf.get_by_key(key)
        if job is None or job.metadata.HasField("deletion_timestamp"):
            return
        when = expires_at(job)
        if when is None:
            return
        left = when - self.clock()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        try:
            fresh = await self.client.get("Job", job.metadata.name, job.metadata.namespace)
        except errors.NotFound:
            return
        when = expires_at(fresh)
        if when is None or when > self.clock():
            if when is not None:
                self.queue.add_after(key, when - self.clock() + 0.05)
            return
        try:
            await self.client.delete("Job", fresh.metadata.name, fresh.metadata.namespace,
                                     propagation="Foreground", uid=fresh.metadata.uid)
        except (errors.NotFound, errors.Conflict):
            return
        self.log.info("%s: deleted (ttlSecondsAfterFinished)", key)
