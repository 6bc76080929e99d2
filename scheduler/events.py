"""Events the scheduler emits (`Scheduled`, `FailedScheduling`), written off
the scheduling path.

Events are API writes like any other: at 1,000 pods/s one Create per pod
would double the load on the apiserver. `EventSink.emit()` only appends to a
bounded buffer; `run()` drains it with a few concurrent writers. When the
buffer is full new events are dropped and counted, as client-go's event
broadcaster drops events rather than block the component.

Writes go through machinery/events.EventRecorder when it exists, else
through a minimal Event create of our own.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import errors, kinds
from machinery.pb import meta_pb2

log = logging.getLogger("kctl.scheduler.events")
COMPONENT = "default-scheduler"


class _MiniRecorder:
    def __init__(self, client, component: str):
        self.client, self.component = client, component

    async def event(self, obj, type_: str, reason: str, message: str) -> None:
        ev = kinds.new("Event")
        md = obj.metadata
        ev.metadata.namespace = md.namespace or "default"
        ev.metadata.generate_name = f"{md.name}."
        ev.involved_object.CopyFrom(meta_pb2.ObjectReference(
            kind=obj.kind or "Pod", namespace=md.namespace, name=md.name, uid=md.uid,
            api_version=obj.api_version or "v1", resource_version=md.resource_version))
        ev.reason, ev.message, ev.type = reason, message, type_
        ev.source.component = self.component
        ev.reporting_component = self.component
        now = Timestamp()
        now.GetCurrentTime()
        ev.first_timestamp.CopyFrom(now)
        ev.last_timestamp.CopyFrom(now)
        ev.count = 1
        await self.client.create(ev)


def make_recorder(client, component: str = COMPONENT):
    try:
        from machinery.events import EventRecorder
    except ImportError:
        return _MiniRecorder(client, component)
    return EventRecorder(client, component)


class EventSink:
    def __init__(self, recorder, *, max_buffer: int = 20000, writers: int = 4, on_drop=None):
        self.recorder = recorder
        self.max_buffer = max_buffer
        self.writers = writers
        self.on_drop = on_drop
        self._buf: deque = deque()
        self._wake = asyncio.Event()
        self.dropped = 0
        self.written = 0

    def emit(self, obj, type_: str, reason: str, message: str) -> None:
        if len(self._buf) >= self.max_buffer:
            self.dropped += 1
            if self.on_drop:
                self.on_drop()
            return
        self._buf.append((obj, type_, reason, message))
        self._wake.set()

    def __len__(self) -> int:
        return len(self._buf)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self.writers):
                tg.create_task(self._writer(), name=f"event-writer-{i}")

    async def _writer(self) -> None:
        while True:
            while not self._buf:
                self._wake.clear()
                await self._wake.wait()
            obj, type_, reason, message = self._buf.popleft()
            try:
                r = self.recorder.event(obj, type_, reason, message)
                if asyncio.iscoroutine(r):
                    await r
                self.written += 1
            except asyncio.CancelledError:
                raise
            except errors.ApiError as exc:
                log.debug("event %s for %s not written: %s", reason, obj.metadata.name, exc)
            except Exception:
                log.exception("event %s for %s not written", reason, obj.metadata.name)
