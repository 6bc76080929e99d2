"""Periodic etcd compaction, as Kubernetes' apiserver does it.

etcd keeps every revision until it is compacted; without compaction a busy
cluster (the scheduler benchmark writes ~100k revisions) slows etcd down by
an order of magnitude. Every `interval` seconds we compact to the revision
seen at the *previous* tick, so at least one interval of history stays
available for watchers resuming from an older resourceVersion (the watch
cache answers "too old" below the compacted revision and clients relist).

Several apiservers compacting the same etcd is harmless: compacting to a
revision that is already compacted fails with "required revision has been
compacted", which we ignore.
"""
from __future__ import annotations

import asyncio
import logging

from machinery import errors

log = logging.getLogger("kctl.apiserver.compactor")


async def compact_periodically(storage, interval: float) -> None:
    if interval <= 0:
        return
    previous: int | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            current = await storage.revision()
            if previous is not None and previous > 1:
                await storage.compact(previous)
                log.info("compacted etcd to revision %d", previous)
            previous = current
        except errors.ApiError as exc:
            if "compacted" in exc.message:
                previous = None
                continue
            log.warning("etcd compaction skipped: %s", exc.message)
