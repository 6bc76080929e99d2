"""Event recording, after client-go's tools/record.

`EventRecorder.event(obj, type, reason, message)` never blocks and never
raises: it puts the event on a bounded queue and returns. The `run()` task
writes events to the apiserver one at a time.

Aggregation (client-go's EventCorrelator / eventLogger): events with the same
key — involved object (kind, namespace, name, uid, apiVersion), type, reason,
message and source (component, host) — are one Event object. The first
occurrence creates `<object name>.<16 hex digits>` in the object's namespace
(`default` for cluster-scoped objects); a repeat within `window` seconds of
the last occurrence updates that Event's `count` and `lastTimestamp` instead.
Repeats that arrive while one is still queued are merged in memory before
anything is written, so a burst of identical events costs one write.

Similar events (client-go's EventAggregator): when one object gets
`max_similar` (10) or more events with the same source, type and reason but
different messages within `window`, further ones are folded into a single
Event whose message is "(combined from similar events): <latest message>"
and whose count keeps growing.

Back-pressure: when the queue is full, a new (not already queued) event is
dropped with a log line; controllers are never slowed down by events. Writes
that fail are retried a few times with backoff, then dropped with a log line.

Concurrency: event() runs on the event loop and touches only in-memory
dicts; the single writer task is the only one that talks to the apiserver,
so the aggregation cache needs no lock.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from machinery import codec, errors, kinds
from machinery.pb import core_pb2, meta_pb2

log = logging.getLogger("kctl.events")

NORMAL, WARNING = "Normal", "Warning"
MAX_MESSAGE = 1024
COMBINED = "(combined from similar events):"


@dataclass
class _Pending:
    ref: meta_pb2.ObjectReference
    type: str
    reason: str
    message: str
    count: int
    first: float
    last: float
    component: str


@dataclass
class _Seen:
    event: Message
    last: float


def reference(obj) -> meta_pb2.ObjectReference:
    """An ObjectReference to an API object (or the reference itself)."""
    if isinstance(obj, meta_pb2.ObjectReference):
        return obj
    info = kinds.of(obj)
    md = obj.metadata
    return meta_pb2.ObjectReference(kind=info.kind, api_version=info.api_version, name=md.name,
                                    namespace=md.namespace, uid=md.uid, resource_version=md.resource_version)


class EventRecorder:
    def __init__(self, client, component: str, host: str = "", *, max_queue: int = 1000,
                 window: float = 600.0, retries: int = 3, retry_delay: float = 1.0,
                 cache_size: int = 4096, max_similar: int = 10, clock=time.time):
        self.client = client
        self.component, self.host = component, host
        self.window, self.retries, self.retry_delay = window, retries, retry_delay
        self.cache_size = cache_size
        self.clock = clock
        self.dropped = 0
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._pending: dict[tuple, _Pending] = {}
        self._seen: OrderedDict[tuple, _Seen] = OrderedDict()
        self._last_name_ns = 0
        self.max_similar = max_similar
        self._similar: OrderedDict[tuple, tuple[float, set[str]]] = OrderedDict()

    def _key(self, ref, type_, reason, message, component) -> tuple:
        return (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version,
                type_, reason, message, component, self.host)

    def for_component(self, component: str) -> "ComponentRecorder":
        """This recorder (its queue, caches and writer task) under another
        source component: one per controller of a controller manager, as
        Kubernetes' controllers each name themselves (`From:` in describe)."""
        return ComponentRecorder(self, component)

    def event(self, obj, type: str, reason: str, message: str, component: str | None = None) -> None:
        """Record an event about obj (an API object or ObjectReference). Never blocks.
        `component`: the source component (default: the recorder's)."""
        component = component or self.component
        if type not in (NORMAL, WARNING):
            log.error("event type %r is not Normal or Warning; dropped (%s %s)", type, reason, message)
            return
        try:
            ref = reference(obj)
        except kinds.UnknownKind as exc:
            log.error("cannot record event %s about %r: %s", reason, obj, exc)
            return
        message = message[:MAX_MESSAGE]
        now = self.clock()
        log.debug("event(%s/%s %s): %s %s: %s", ref.namespace, ref.name, ref.kind, type, reason, message)
        message = self._combine(ref, type, reason, message, now, component)
        key = self._key(ref, type, reason, message if not message.startswith(COMBINED) else COMBINED, component)
        pending = self._pending.get(key)
        if pending is not None:
            pending.count += 1
            pending.last = now
            pending.message = message
            return
        if self._queue.full():
            self.dropped += 1
            log.warning("event queue full (%d); dropping event %s %s about %s/%s: %s",
                        self._queue.maxsize, type, reason, ref.namespace, ref.name, message)
            return
        self._pending[key] = _Pending(ref, type, reason, message, 1, now, now, component)
        self._queue.put_nowait(key)

    def _combine(self, ref, type_, reason, message, now, component) -> str:
        """Count distinct messages per (object, type, reason); past max_similar, combine."""
        agg = self._key(ref, type_, reason, "", component)
        start, messages = self._similar.get(agg, (now, set()))
        if now - start > self.window:
            start, messages = now, set()
        messages.add(message)
        self._similar[agg] = (start, messages)
        self._similar.move_to_end(agg)
        while len(self._similar) > self.cache_size:
            self._similar.popitem(last=False)
        if len(messages) >= self.max_similar:
            return f"{COMBINED} {message}"[:MAX_MESSAGE]
        return message

    def eventf(self, obj, type: str, reason: str, fmt: str, *args) -> None:
        self.event(obj, type, reason, fmt % args if args else fmt)

    async def run(self) -> None:
        """The writer task: put it in the component's TaskGroup."""
        while True:
            key = await self._queue.get()
            try:
                pending = self._pending.pop(key)
                await self._write(key, pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing an event failed")
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued event has been written (or dropped)."""
        await self._queue.join()

    # ------------------------------------------------------------ writing

    def _ts(self, t: float) -> Timestamp:
        ts = Timestamp()
        ts.FromMicroseconds(int(t * 1_000_000))
        return ts

    def _name(self, obj_name: str) -> str:
        n = max(time.time_ns(), self._last_name_ns + 1)
        self._last_name_ns = n
        return f"{obj_name}.{n:016x}"

    def _new_event(self, p: _Pending) -> Message:
        ev = kinds.new("Event")
        ev.metadata.name = self._name(p.ref.name)
        ev.metadata.namespace = p.ref.namespace or "default"
        ev.involved_object.CopyFrom(p.ref)
        ev.type, ev.reason, ev.message, ev.count = p.type, p.reason, p.message, p.count
        ev.source.CopyFrom(core_pb2.EventSource(component=p.component, host=self.host))
        ev.first_timestamp.CopyFrom(self._ts(p.first))
        ev.last_timestamp.CopyFrom(self._ts(p.last))
        ev.reporting_component, ev.reporting_instance = p.component, self.host
        return ev

    async def _write(self, key: tuple, p: _Pending) -> None:
        seen = self._seen.get(key)
        if seen is not None and p.first - seen.last > self.window:
            seen = None                               # too long ago: a new Event
        for attempt in range(self.retries + 1):
            try:
                if seen is not None:
                    ev = codec.copy(seen.event)
                    ev.count += p.count
                    ev.message = p.message
                    ev.last_timestamp.CopyFrom(self._ts(p.last))
                    try:
                        written = await self.client.update(ev)
                    except errors.Conflict:
                        ev = await self.client.get("Event", ev.metadata.name, ev.metadata.namespace)
                        ev.count += p.count
                        ev.message = p.message
                        ev.last_timestamp.CopyFrom(self._ts(p.last))
                        written = await self.client.update(ev)
                else:
                    written = await self.client.create(self._new_event(p))
                self._remember(key, written, p.last)
                return
            except errors.NotFound:
                seen = None                           # the Event was deleted: start over
            except errors.AlreadyExists:
                pass                                  # name collision: a new name next time
            except errors.ApiError as exc:
                if attempt == self.retries:
                    log.warning("dropping event %s %s about %s/%s after %d attempts: %s", p.type,
                                p.reason, p.ref.namespace, p.ref.name, attempt + 1, exc)
                    return
                await asyncio.sleep(self.retry_delay * 2 ** attempt)
        log.warning("dropping event %s about %s/%s", p.reason, p.ref.namespace, p.ref.name)

    def _remember(self, key: tuple, event: Message, last: float) -> None:
        self._seen[key] = _Seen(event, last)
        self._seen.move_to_end(key)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)


class ComponentRecorder:
    """An EventRecorder seen under one source component (EventRecorder.for_component)."""

    def __init__(self, recorder: EventRecorder, component: str):
        self.recorder, self.component = recorder, component

    def event(self, obj, type: str, reason: str, message: str) -> None:
        self.recorder.event(obj, type, reason, message, self.component)

    def eventf(self, obj, type: str, reason: str, fmt: str, *args) -> None:
        self.event(obj, type, reason, fmt % args if args else fmt)
