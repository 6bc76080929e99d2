"""The scheduling queue: active, backoff and unschedulable pods, after
kube-scheduler's PriorityQueue.

* active: a heap by (-priority, time added); `pop()` takes the head.
* backoff: pods that failed, waiting out 1 s doubling per attempt up to
  10 s (podInitialBackoff / podMaxBackoff); they move to active when it ends.
* unschedulable: pods no node could take; they stay until a cluster event
  that could help (node added/updated, pod deleted) calls `move_all()`, or
  for at most 5 minutes (`flush_unschedulable()`).

A pod popped is "in flight" until the scheduler calls `done()` (assumed),
`add_unschedulable()` or `add_backoff()`. If a move request happened while
it was in flight, a failed pod goes to backoff rather than unschedulable,
so the event that might have helped is not lost (kube-scheduler's
moveRequestCycle).

Concurrency: single event loop; only `pop()` awaits. It wakes on `add`/moves
through an asyncio.Event and on the next backoff expiry through a timeout.
The clock is injectable; tests drive it with `pop_nowait()`.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field

from scheduler.framework import PodInfo

ACTIVE, BACKOFF, UNSCHEDULABLE = "active", "backoff", "unschedulable"


@dataclass
class QueuedPod:
    info: PodInfo
    added: float                  # first time the queue saw this pod
    attempts: int = 0
    last_failure: float = 0.0
    where: str = ""
    seq: int = 0
    cycle: int = 0                # scheduling cycle of the last pop
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.info.key


class SchedulingQueue:
    def __init__(self, *, clock=time.monotonic, initial_backoff: float = 1.0,
                 max_backoff: float = 10.0, max_unschedulable: float = 300.0):
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self._pods: dict[str, QueuedPod] = {}         # queued: active, backoff, unschedulable
        self._unschedulable: dict[str, QueuedPod] = {}  # the unschedulable ones (moves are O(these))
        self._in_flight: dict[str, QueuedPod] = {}
        self._active: list = []
        self._backoff: list = []
        self._seq = itertools.count()
        self._counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0}
        self.scheduling_cycle = 0
        self._move_request_cycle = -1
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ moves

    def _place(self, qp: QueuedPod, where: str) -> None:
        if qp.where in self._counts and self._pods.get(qp.key) is qp:
            self._counts[qp.where] -= 1
            if qp.where == UNSCHEDULABLE:
                self._unschedulable.pop(qp.key, None)
        qp.where = where
        qp.seq = next(self._seq)
        self._pods[qp.key] = qp
        self._counts[where] += 1
        if where == UNSCHEDULABLE:
            self._unschedulable[qp.key] = qp
        elif where == ACTIVE:
            heapq.heappush(self._active, (-qp.info.priority, qp.added, qp.seq, qp))
            self._wake.set()
        elif where == BACKOFF:
            heapq.heappush(self._backoff, (self.backoff_until(qp), qp.seq, qp))
            self._wake.set()

    def _remove(self, key: str) -> QueuedPod | None:
        qp = self._pods.pop(key, None)
        if qp is not None:
            self._counts[qp.where] -= 1
            if qp.where == UNSCHEDULABLE:
                self._unschedulable.pop(key, None)
            qp.where = ""
        return qp

    def backoff_duration(self, qp: QueuedPod) -> float:
        d = self.initial_backoff
        for _ in range(1, qp.attempts):
            d *= 2
            if d >= self.max_backoff:
                return self.max_backoff
        return min(d, self.max_backoff)

    def backoff_until(self, qp: QueuedPod) -> float:
        return qp.last_failure + self.backoff_duration(qp)

    # --------------------------------------------------------- public API

    def add(self, info: PodInfo) -> None:
        """A new pod to schedule (or an update of one already known)."""
        if info.key in self._in_flight:
            self._in_flight[info.key].info = info
            return
        qp = self._pods.get(info.key)
        if qp is not None:
            self.update(info)
            return
        self._place(QueuedPod(info, self.clock()), ACTIVE)

    def update(self, info: PodInfo) -> None:
        """The pod changed: keep its place, but an unschedulable pod may fit
        now, so it moves (to backoff if still backing off)."""
        fl = self._in_flight.get(info.key)
        if fl is not None:
            fl.info = info
            return
        qp = self._pods.get(info.key)
        if qp is None:
            self.add(info)
            return
        qp.info = info
        if qp.where == UNSCHEDULABLE:
            self._move(qp)

    def refresh(self, info: PodInfo) -> None:
        """A newer version of the pod that changes nothing relevant to
        scheduling (status, annotations): keep its place and state."""
        qp = self._in_flight.get(info.key) or self._pods.get(info.key)
        if qp is not None:
            qp.info = info

    def delete(self, key: str) -> None:
        self._remove(key)
        self._in_flight.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._pods or key in self._in_flight

    def pop_nowait(self) -> QueuedPod | None:
        self.flush_backoff()
        while self._active:
            _, _, seq, qp = heapq.heappop(self._active)
            if qp.where != ACTIVE or qp.seq != seq or self._pods.get(qp.key) is not qp:
                continue
            self._remove(qp.key)
            self.scheduling_cycle += 1
            qp.cycle = self.scheduling_cycle
            qp.attempts += 1
            self._in_flight[qp.key] = qp
            return qp
        return None

    async def pop(self) -> QueuedPod:
        while True:
            qp = self.pop_nowait()
            if qp is not None:
                return qp
            self._wake.clear()
            timeout = None
            if self._backoff:
                timeout = max(0.0, self._backoff[0][0] - self.clock()) + 0.001
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """The popped pod was assumed (or dropped): it leaves the queue."""
        self._in_flight.pop(key, None)

    def add_unschedulable(self, qp: QueuedPod) -> None:
        """No node fits. Goes to backoff if a move request happened during
        its scheduling cycle, else to the unschedulable set."""
        if self._in_flight.pop(qp.key, None) is None:
            return          # deleted meanwhile
        qp.last_failure = self.clock()
        self._place(qp, BACKOFF if self._move_request_cycle >= qp.cycle else UNSCHEDULABLE)

    def add_backoff(self, qp: QueuedPod) -> None:
        """Retry after backoff (binding failed, API error)."""
        if qp.key in self._pods:
            return
        self._in_flight.pop(qp.key, None)
        qp.last_failure = self.clock()
        self._place(qp, BACKOFF)

    def _move(self, qp: QueuedPod) -> None:
        self._place(qp, BACKOFF if self.backoff_until(qp) > self.clock() else ACTIVE)

    def move_all(self, event: str = "") -> int:
        """A cluster event that may make unschedulable pods fit."""
        self._move_request_cycle = self.scheduling_cycle
        moved = list(self._unschedulable.values())
        for qp in moved:
            self._move(qp)
        return len(moved)

    def flush_backoff(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, qp = heapq.heappop(self._backoff)
            if qp.where == BACKOFF and qp.seq == seq and self._pods.get(qp.key) is qp:
                self._place(qp, ACTIVE)

    def flush_unschedulable(self) -> None:
        now = self.clock()
        for qp in list(self._unschedulable.values()):
            if now - qp.last_failure >= self.max_unschedulable:
                self._move(qp)

    def lengths(self) -> dict[str, int]:
        return dict(self._counts)

    def where(self, key: str) -> str | None:
        if key in self._in_flight:
            return "in-flight"
        qp = self._pods.get(key)
        return qp.where if qp else None
