"""client-go's rate-limited work queue, on asyncio.

Semantics (util/workqueue):
* `add(key)`: a key waiting in the queue is never queued twice (the `dirty`
  set). A key being processed (the `processing` set, between `get()` and
  `done()`) is not handed to a second worker: it is only marked dirty, and
  `done()` puts it back in the queue. So one key is processed by at most one
  worker at a time, and a change that arrives mid-sync is never lost.
* `add_after(key, delay)`: a timer adds the key later; several pending delays
  for one key keep only the earliest.
* `add_rate_limited(key)`: add_after with the rate limiter's delay: per-key
  exponential backoff (base * 2**failures, capped) and, optionally, an overall
  token bucket; the larger delay wins. `forget(key)` resets the key's count
  (call it after a successful sync), `num_requeues(key)` reads it.
* `shutdown()`: no more adds; `get()` hands out what is still queued, then
  raises QueueShutDown in every waiting worker.

Concurrency: everything runs on one event loop and only `get()` awaits, so
each method is atomic. Waiting workers are futures served first come first
served. Timers are loop.call_later handles, cancelled on shutdown.

Metrics (prometheus_client default registry), label `name`:
kctl_workqueue_depth, kctl_workqueue_adds_total, kctl_workqueue_retries_total,
kctl_workqueue_queue_duration_seconds (added → get), and
kctl_workqueue_work_duration_seconds (get → done: the sync latency).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Hashable

from prometheus_client import Counter, Gauge, Histogram

from machinery import errors

log = logging.getLogger("kctl.workqueue")

_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60)
DEPTH = Gauge("kctl_workqueue_depth", "Current depth of the work queue", ["name"])
ADDS = Counter("kctl_workqueue_adds_total", "Keys added to the work queue", ["name"])
RETRIES = Counter("kctl_workqueue_retries_total", "Rate-limited re-adds (retries)", ["name"])
QUEUE_DURATION = Histogram("kctl_workqueue_queue_duration_seconds",
                           "Seconds a key waits in the queue before a worker takes it", ["name"],
                           buckets=_BUCKETS)
WORK_DURATION = Histogram("kctl_workqueue_work_duration_seconds",
                          "Seconds spent processing a key (get to done)", ["name"], buckets=_BUCKETS)


class QueueShutDown(errors.ControlFlow):
    """Raised by get() once the queue is shut down and drained."""


class RateLimiter:
    """Max of a per-key exponential backoff and an optional token bucket.

    client-go's DefaultControllerRateLimiter is base 5 ms, cap 1000 s,
    bucket 10 qps / burst 100; we default to a 300 s cap and no bucket.
    """

    def __init__(self, base_delay: float = 0.005, max_delay: float = 300.0,
                 qps: float | None = None, burst: int = 100, clock=time.monotonic):
        self.base_delay, self.max_delay = base_delay, max_delay
        self.qps, self.burst, self.clock = qps, burst, clock
        self._failures: dict[Hashable, int] = {}
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self.base_delay * (2 ** min(n, 62)), self.max_delay)
        return max(delay, self._bucket_delay())

    def _bucket_delay(self) -> float:
        """Reserve one token; the delay until it is available (like rate.Limiter.Reserve)."""
        if not self.qps:
            return 0.0
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class WorkQueue:
    """A rate-limited, delaying, de-duplicating queue of keys (see module doc)."""

    def __init__(self, name: str = "", *, rate_limiter: RateLimiter | None = None,
                 base_delay: float = 0.005, max_delay: float = 300.0,
                 qps: float | None = None, burst: int = 100):
        self.name = name
        self.rate_limiter = rate_limiter or RateLimiter(base_delay, max_delay, qps, burst)
        self._queue: deque = deque()
        self._dirty: set = set()
        self._processing: dict[Hashable, float] = {}   # key -> get() time
        self._added_at: dict[Hashable, float] = {}
        self._waiters: deque[asyncio.Future] = deque()
        self._timers: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False
        self._depth = DEPTH.labels(name)
        self._adds = ADDS.labels(name)
        self._retries = RETRIES.labels(name)
        self._queue_duration = QUEUE_DURATION.labels(name)
        self._work_duration = WORK_DURATION.labels(name)

    # ------------------------------------------------------------ basic queue

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._adds.inc()
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key in self._processing:
            return            # done() re-queues it
        self._queue.append(key)
        self._depth.set(len(self._queue))
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._queue:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def get(self) -> Hashable:
        """The next key; the caller owns it until done(key)."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake()          # pass the wake-up on to another worker
                raise
        key = self._queue.popleft()
        self._depth.set(len(self._queue))
        self._dirty.discard(key)
        now = time.monotonic()
        self._processing[key] = now
        added = self._added_at.pop(key, None)
        if added is not None:
            self._queue_duration.observe(now - added)
        if self._queue:
            self._wake()
        return key

    def done(self, key: Hashable) -> None:
        started = self._processing.pop(key, None)
        if started is not None:
            self._work_duration.observe(time.monotonic() - started)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._depth.set(len(self._queue))
            self._wake()

    def __len__(self) -> int:
        return len(self._queue)

    def len(self) -> int:
        return len(self._queue)

    def shutdown(self) -> None:
        self._shutting_down = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # ------------------------------------------------------------ delays

    def add_after(self, key: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._timers[key] = (ready, loop.call_at(ready, self._fire, key))

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    # ------------------------------------------------------------ rate limiting

    def add_rate_limited(self, key: Hashable) -> None:
        if self._shutting_down:
            return
        self._retries.inc()
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)


async def run_workers(queue: WorkQueue, sync: Callable[[Hashable], Awaitable[None] | None], n: int = 1,
                      *, max_retries: int | None = None) -> None:
    """Run n workers: get → sync(key) → forget (or add_rate_limited on error) → done.

    Returns when the queue is shut down and drained; cancelling it cancels
    the workers (a sync in progress gets CancelledError). An exception from
    sync is logged with the key and the key is retried with backoff (dropped
    after max_retries retries when that is set). sync may be a coroutine
    function or a plain function.
    """
    async def worker(i: int) -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            try:
                result = sync(key)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception as exc:
                if max_retries is not None and queue.num_requeues(key) >= max_retries:
                    log.error("%s: dropping %r after %d retries: %s", queue.name, key, max_retries, exc)
                    queue.forget(key)
                else:
                    log.warning("%s: error syncing %r (retry %d): %s", queue.name, key,
                                queue.num_requeues(key) + 1, exc,
                                exc_info=not isinstance(exc, errors.ApiError))
                    queue.add_rate_limited(key)
            else:
                queue.forget(key)
            queue.done(key)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(worker(i), name=f"{queue.name}-worker-{i}")
