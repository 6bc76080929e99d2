"""Pipelined, batched binding.

The scheduling loop decides one pod at a time and hands the binding to
`Binder.submit()` (non-blocking) after assuming the pod in the cache. The
binder task sends what has accumulated as one BindBatch (at most
`batch_size`, 128 by default: etcd's limit of operations per transaction),
with up to `max_inflight` batches outstanding. While a batch is on the wire
the loop keeps deciding, so batches grow by themselves when the apiserver is
the bottleneck and stay small (low latency) when it is not.

Every binding keeps its own result: `on_result(item, error_or_None)` is
called once per submitted item, in the event loop, after its batch returns
(an RPC failure is reported as that error for every item of the batch).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from machinery import errors
from machinery.pb import api_pb2

log = logging.getLogger("kctl.scheduler.binder")


@dataclass
class BindItem:
    namespace: str
    name: str
    uid: str
    node: str
    annotations: dict[str, str]
    ctx: Any = None          # the scheduler's queued pod

    def request(self) -> api_pb2.BindRequest:
        return api_pb2.BindRequest(namespace=self.namespace, name=self.name, uid=self.uid,
                                   node_name=self.node, annotations=self.annotations)


class Binder:
    def __init__(self, client, on_result: Callable[[BindItem, errors.ApiError | None], None], *,
                 batch_size: int = 128, max_inflight: int = 2,
                 on_batch: Callable[[int, float], None] | None = None):
        self.client = client
        self.on_result = on_result
        self.on_batch = on_batch
        self.batch_size = max(1, min(batch_size, 128))
        self._pending: deque[BindItem] = deque()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_inflight)
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0

    def submit(self, item: BindItem) -> None:
        self._pending.append(item)
        self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        try:
            while True:
                while not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                await self._slots.acquire()
                n = min(self.batch_size, len(self._pending))
                batch = [self._pending.popleft() for _ in range(n)]
                t = asyncio.create_task(self._send(batch), name="bind-batch")
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
        finally:
            for t in list(self._tasks):
                t.cancel()

    async def _send(self, batch: list[BindItem]) -> None:
        try:
            t0 = time.monotonic()
            try:
                results = await self.client.bind_batch([b.request() for b in batch])
            except errors.ApiError as exc:
                log.warning("BindBatch of %d failed: %s", len(batch), exc)
                results = [exc] * len(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:       # report per item, never lose a binding
                log.exception("BindBatch of %d failed", len(batch))
                results = [errors.ApiError(str(exc))] * len(batch)
            self.batches += 1
            if self.on_batch:
                self.on_batch(len(batch), time.monotonic() - t0)
            for item, err in zip(batch, results):
                try:
                    self.on_result(item, err)
                except Exception:
                    log.exception("bind result handler failed for %s/%s", item.namespace, item.name)
        finally:
            self._slots.release()
