"""A fake etcd read side (get/range) for admission plugin tests: the objects given,
encoded under their apiserver keys."""
from __future__ import annotations

from types import SimpleNamespace

from apiserver import objects
from machinery import kinds


class FakeStorage:
    def __init__(self, *objs):
        self.kvs = {objects.key(kinds.of(o), o.metadata.namespace, o.metadata.name): objects.encode(o) for o in objs}

    async def get(self, key):
        raw = self.kvs.get(key)
        return (SimpleNamespace(value=raw, mod_revision=1) if raw else None), 1

    async def range(self, prefix):
        return [SimpleNamespace(value=v, mod_revision=1) for k, v in sorted(self.kvs.items())
                if k.startswith(prefix)], 1, False
