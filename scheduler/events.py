"""Events the scheduler emits (`Scheduled`, `FailedScheduling`), written off
the scheduling path through machinery/events.EventRecorder.

Events are API writes like any other: at 1,000 pods/s one Create per pod
would double the load on the apiserver. `emit()` never blocks: the recorder
queues (bounded; identical events merge) and its writer tasks drain the
queue. When the queue is full new events are dropped and counted, as
client-go's broadcaster drops events rather than slow the component.
"""
from __future__ import annotations

import asyncio

from machinery.events import EventRecorder

COMPONENT = "default-scheduler"


def make_recorder(client, component: str = COMPONENT, *, max_queue: int = 20000) -> EventRecorder:
    return EventRecorder(client, component, max_queue=max_queue)


class EventSink:
    """Adapter: emit() → recorder.event(); run() runs the recorder's writer
    (`writers` of them: events of different pods are independent keys)."""

    def __init__(self, recorder, *, writers: int = 1, on_drop=None):
        self.recorder = recorder
        self.writers = writers
        self.on_drop = on_drop

    def emit(self, obj, type_: str, reason: str, message: str) -> None:
        before = getattr(self.recorder, "dropped", 0)
        self.recorder.event(obj, type_, reason, message)
        if self.on_drop and getattr(self.recorder, "dropped", 0) != before:
            self.on_drop()

    async def run(self) -> None:
        run = getattr(self.recorder, "run", None)
        if run is None:
            await asyncio.Event().wait()
            return
        async with asyncio.TaskGroup() as tg:
            for i in range(self.writers):
                tg.create_task(run(), name=f"event-writer-{i}")
