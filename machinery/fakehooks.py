"""FakeClient's test hooks: what a unit test uses to set the scene and to
steer the fake (machinery/fakeclient.py), kept apart from the API methods
that stand in for machinery.client.Client.

Why apart: the API half models the apiserver's rules; this half bypasses
them on purpose. How: FakeClientHooks is a mixin with no state of its own;
it works on FakeClient's store (`_objects`, `_watches`, `_failures`,
`resource_version`) and helpers (`_next_rv`, `_key`, `_stored_or_none`,
`_record`), so it only makes sense as FakeClient's base. `_check(method)`
is the API half's side of fail_next: it raises the next injected failure.
"""
from __future__ import annotations

import uuid

from google.protobuf.message import Message

from machinery import codec, kinds


class FakeClientHooks:
    """Test hooks of FakeClient: error injection, watch control, direct store access."""

    def fail_next(self, method: str, exc: Exception, times: int = 1) -> None:
        """Make the next `times` calls of `method` ("create", "list", "watch", ...) raise exc."""
        self._failures[method].extend([exc] * times)

    def pending_failures(self, method: str) -> int:
        """How many injected failures of `method` have not been raised yet."""
        return len(self._failures[method])

    def clear_failures(self, method: str | None = None) -> None:
        """Drop the injected failures not raised yet (of one method, or all)."""
        if method is None:
            self._failures.clear()
        else:
            self._failures[method].clear()

    def hold_watches(self, kind) -> None:
        """Hold back the events of `kind` for open watches (a slow stream: the
        informer caches lag) until release_watches(kind)."""
        self._watches.hold(kinds.lookup(kind).kind)

    def release_watches(self, kind) -> None:
        """Deliver the held events of `kind`, in order, and stop holding."""
        self._watches.release(kinds.lookup(kind).kind)

    def seed(self, *objs: Message) -> list[Message]:
        """Store objects as given (status, deletionTimestamp, finalizers and
        all; a uid and namespace "default" if missing), each with a new
        resourceVersion and an ADDED event; no validation, no action
        recorded. Returns copies of what was stored."""
        out = []
        for obj in objs:
            info = kinds.of(obj)
            new = codec.copy(obj)
            new.api_version, new.kind = info.api_version, info.kind
            if info.namespaced and not new.metadata.namespace:
                new.metadata.namespace = "default"
            new.metadata.uid = new.metadata.uid or str(uuid.uuid4())
            new.metadata.resource_version = str(self._next_rv())
            old = self._stored_or_none(info, new.metadata.namespace, new.metadata.name)
            self._objects[info.kind][self._key(info, new.metadata.namespace, new.metadata.name)] = new
            self._record(info, "ADDED" if old is None else "MODIFIED", new, old)
            out.append(codec.copy(new))
        return out

    def stored(self, kind, name: str, namespace: str = "default") -> Message | None:
        """A copy of the stored object, or None (synchronous; no action recorded)."""
        obj = self._stored_or_none(kinds.lookup(kind), namespace, name)
        return codec.copy(obj) if obj is not None else None

    def expire_watches(self) -> None:
        """Open watches raise errors.Expired; resourceVersions up to now become too old."""
        self._watches.expire(self.resource_version)

    def end_watches(self) -> None:
        """Open watch streams end normally (as when the apiserver closes them)."""
        self._watches.end()

    @property
    def watch_count(self) -> int:
        return len(self._watches.watchers)

    def objects(self, kind) -> list[Message]:
        """Copies of every stored object of `kind` (synchronous; no action recorded)."""
        return [codec.copy(o) for o in self._objects[kinds.lookup(kind).kind].values()]

    def _check(self, method: str) -> None:
        if self._failures[method]:
            raise self._failures[method].pop(0)
