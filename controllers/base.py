"""What every controller shares: a named rate-limited workqueue of keys,
`enqueue` helpers for handlers, and `run()` = wait for the informer caches,
then N workers calling the idempotent `sync(key)` (design §6.2).

Concurrency: handlers run on the informer dispatcher tasks and only add keys;
the workqueue guarantees one worker per key at a time, so a sync never races
another sync of the same object; syncs of different keys interleave only at
awaits (API calls), and each re-reads the cache after every await it cares
about. Errors from sync are retried with per-key exponential backoff by
run_workers; "come back later" uses queue.add_after.
"""
from __future__ import annotations

import asyncio
import logging

from machinery import codec, errors
from machinery.informer import key_of
from machinery.workqueue import WorkQueue, run_workers


class Controller:
    name = "controller"

    def __init__(self, client, factory, recorder=None, workers: int = 1):
        self.client, self.factory, self.recorder = client, factory, recorder
        self.workers = workers
        self.queue = WorkQueue(self.name, max_delay=30.0)
        self.log = logging.getLogger(f"kctl.controllers.{self.name}")

    def informers(self) -> list:
        return []

    # --------------------------------------------------- handler helpers
    def enqueue(self, obj) -> None:
        self.queue.add(key_of(obj))

    def enqueue_key(self, key: str) -> None:
        self.queue.add(key)

    def event(self, obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, message)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self.informers()))
        self.log.info("caches synced; starting %d worker(s)", self.workers)
        try:
            await run_workers(self.queue, self.sync, self.workers)
        finally:
            self.queue.shutdown()
