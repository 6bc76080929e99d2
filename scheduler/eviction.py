"""The evictor DefaultPreemption acts through (Handle.evictor): reserve the
nominated node for the preemptor in the cache, delete the victims
gracefully.

`nominate(pod, node, victims)` is called synchronously inside a decision:
it reserves (cache.nominate) and remembers the nomination, then starts one
task per victim that deletes it with its own grace period (preconditioned
on its uid, as kube-scheduler's preemption does) after a `Preempted` event.
A victim already gone (NotFound, Conflict on the uid) is not an error. The
preemptor's status.nominatedNodeName is written with its PodScheduled
condition by the scheduler's unschedulable bookkeeping (scheduler.py).
"""
from __future__ import annotations

import asyncio
import logging

from machinery import errors

log = logging.getLogger("kctl.scheduler.preemption")


class Evictor:
    def __init__(self, client, cache, events):
        self.client = client
        self.cache = cache
        self.events = events
        self.nominations: dict[str, str] = {}       # preemptor uid -> node
        self._tasks: set[asyncio.Task] = set()
        self.evicted = 0

    def nominated_node(self, pod) -> str:
        """Where the pod was nominated (its status, or a nomination not yet
        written back)."""
        return pod.pod.status.nominated_node_name or self.nominations.get(pod.uid, "")

    def nominate(self, pod, node: str, victims: list) -> None:
        self.cache.nominate(pod, node)
        self.nominations[pod.uid] = node
        for rec in victims:
            victim = rec.pod
            self.events.emit(victim, "Normal", "Preempted",
                             f"Preempted by pod {pod.namespace}/{pod.name} on node {node}")
            t = asyncio.get_running_loop().create_task(self._delete(victim), name="preempt-victim")
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def forget(self, uid: str) -> None:
        self.nominations.pop(uid, None)

    async def _delete(self, victim) -> None:
        md = victim.metadata
        try:
            await self.client.delete("Pod", md.name, md.namespace, uid=md.uid)
            self.evicted += 1
            log.info("preempted %s/%s", md.namespace, md.name)
        except (errors.NotFound, errors.Conflict):
            pass
        except errors.ApiError as exc:
            log.warning("preempting %s/%s failed: %s", md.namespace, md.name, exc)

    def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()
