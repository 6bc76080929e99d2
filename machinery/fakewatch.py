"""The watch side of the unit tests' FakeClient (machinery/fakeclient.py).

`WatchHub` keeps what the apiserver's watch cache keeps: the history of
changes (for watches from a resourceVersion), the open watches, each with
its namespace, label and field selector, and the compaction point below
which a resourceVersion is too old (errors.Expired). A change is turned into
the event each watch should see: ADDED/DELETED when an object enters or
leaves the watch's selectors, MODIFIED while it stays in.

Test controls: `expire()` (open watches raise Expired), `end()` (streams end
cleanly), `hold(kind)`/`release(kind)` (events of a kind are held back, as
by a slow stream, then delivered in order).

Everything is synchronous except waiting for the next event, so the
FakeClient registers a watch and replays history in one step and never
misses or doubles an event.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from google.protobuf.message import Message

from machinery import codec, errors, selectors
from machinery.client import WatchEvent

_EXPIRE = object()
_END = object()


def label_matcher(selector: str):
    """labels -> bool for a label selector string; BadRequest when it is invalid."""
    if not selector or not selector.strip():
        return lambda labels: True
    try:
        return selectors.parse_label_selector(selector).matches
    except ValueError as exc:
        raise errors.BadRequest(f"invalid label selector {selector!r}: {exc}") from exc


def field_matcher(selector: str, kind: str):
    """obj -> bool for a field selector string; BadRequest when it is invalid."""
    if not selector or not selector.strip():
        return lambda obj: True
    try:
        return selectors.parse_field_selector(selector, kind).matches
    except ValueError as exc:
        raise errors.BadRequest(f"invalid field selector {selector!r}: {exc}") from exc


@dataclass
class Change:
    rv: int
    kind: str
    type: str                 # ADDED, MODIFIED, DELETED
    obj: Message
    old: Message | None


@dataclass
class Watcher:
    kind: str
    namespace: str
    labels: object
    fields: object
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def event_for(self, ch: Change) -> WatchEvent | None:
        """What this watch sees of a change (None: nothing)."""
        if ch.kind != self.kind:
            return None

        def visible(o):
            return (o is not None and (not self.namespace or o.metadata.namespace == self.namespace)
                    and self.labels(o.metadata.labels) and self.fields(o))
        now, before = visible(ch.obj), visible(ch.old)
        if ch.type == "MODIFIED":
            type_ = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else None
        else:
            type_ = ch.type if now else None
        if type_ is None:
            return None
        return WatchEvent(type_, codec.copy(ch.obj), str(ch.rv))


class WatchHub:
    def __init__(self):
        self.history: list[Change] = []
        self.compacted = 0            # watching from an rv below this is Expired
        self.watchers: list[Watcher] = []
        self.held: dict[str, list[tuple[Watcher, WatchEvent]]] = {}

    def record(self, rv: int, kind: str, type_: str, obj: Message, old: Message | None) -> None:
        ch = Change(rv, kind, type_, codec.copy(obj), old)
        self.history.append(ch)
        held = self.held.get(kind)
        for w in self.watchers:
            ev = w.event_for(ch)
            if ev is None:
                continue
            if held is not None:
                held.append((w, ev))
            else:
                w.queue.put_nowait(ev)

    def open(self, w: Watcher, resource_version: str, current_rv: int, objects: list[Message]) -> Watcher:
        """Register w: replay `objects` (no resourceVersion) or the history after it."""
        if resource_version and int(resource_version) < self.compacted - 1:
            raise errors.Expired(f"too old resource version: {resource_version} ({self.compacted})")
        if not resource_version:
            for o in objects:
                ev = w.event_for(Change(current_rv, w.kind, "ADDED", o, None))
                if ev:
                    ev.resource_version = o.metadata.resource_version
                    w.queue.put_nowait(ev)
        else:
            for ch in self.history:
                if ch.rv > int(resource_version):
                    ev = w.event_for(ch)
                    if ev:
                        w.queue.put_nowait(ev)
        self.watchers.append(w)
        return w

    async def next(self, w: Watcher) -> WatchEvent | None:
        """The next event for w; None when the stream ends; Expired after expire()."""
        ev = await w.queue.get()
        if ev is _EXPIRE:
            raise errors.Expired("too old resource version")
        return None if ev is _END else ev

    def close(self, w: Watcher) -> None:
        self.watchers.remove(w)

    def expire(self, current_rv: int) -> None:
        self.compacted = current_rv + 1
        self.history.clear()
        for w in self.watchers:
            w.queue.put_nowait(_EXPIRE)

    def end(self) -> None:
        for w in self.watchers:
            w.queue.put_nowait(_END)

    def hold(self, kind: str) -> None:
        self.held.setdefault(kind, [])

    def release(self, kind: str) -> None:
        for w, ev in self.held.pop(kind, []):
            if w in self.watchers:
                w.queue.put_nowait(ev)
