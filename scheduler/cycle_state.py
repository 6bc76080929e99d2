"""CycleState: what plugins share during one scheduling attempt, after
kube-scheduler's framework/cycle_state.go.

A new CycleState is made for every attempt (Algorithm.schedule) and passed
to every extension point, then to Bind. The pattern is kube-scheduler's:
a plugin computes something once in PreFilter or PreScore, writes it under
its own key, and reads it in Filter or Score. Values are `StateData`: their
`clone()` makes the copy `CycleState.clone()` hands out (preemption, when it
comes, simulates removing pods on a clone); the default clone is shallow, as
kube-scheduler recommends for data written once and then only read.

`read()` returns None for a key nobody wrote in this cycle (kube-scheduler
returns ErrNotFound); a plugin then computes what it needs itself.
Single-threaded like the rest of a decision: no locking.
"""
from __future__ import annotations

import copy


class StateData:
    """A value stored in a CycleState."""

    def clone(self) -> "StateData":
        return copy.copy(self)


class CycleState:
    __slots__ = ("_storage", "skip_score_plugins")

    def __init__(self):
        self._storage: dict[str, StateData] = {}
        self.skip_score_plugins: set[str] = set()     # PreScore answered SKIP

    def read(self, key: str) -> StateData | None:
        return self._storage.get(key)

    def write(self, key: str, value: StateData) -> None:
        self._storage[key] = value

    def delete(self, key: str) -> None:
        self._storage.pop(key, None)

    def clone(self) -> "CycleState":
        out = CycleState()
        out._storage = {k: v.clone() for k, v in self._storage.items()}
        out.skip_score_plugins = set(self.skip_score_plugins)
        return out

    def __contains__(self, key: str) -> bool:
        return key in self._storage
