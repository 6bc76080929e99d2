"""When the watch cache's followers send BOOKMARK events, without a timer each.

A follower that asked for bookmarks sends one after `interval` seconds with
no event (if the cache knows a newer revision than it sent).  Waiting with
`asyncio.wait_for(wake.wait(), interval)` did that with a task and a timer
per follower per wait: with 1,000 watchers, 1,000 of each for every event
(~10 us per delivery, bench/README.md "The watch fan-out").  Instead each
KindCache has one `Ticks`: a timer that, while any follower wants
bookmarks, wakes every follower a quarter of the shortest interval apart;
a follower's `IdleClock` tells, on each wake without events, whether its
interval has passed.  A bookmark is thus sent between 1 and 1.25 intervals
after the last event (Kubernetes' own are not exact either: its watch
cache sends them around the interval, in one-second buckets).
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Callable, Iterator


class Ticks:
    """One timer per cache: while any follower is inside `following()`,
    `wake_all()` every quarter of the shortest interval asked since the timer
    last started; no timer once they have all left."""

    def __init__(self, wake_all: Callable[[], None]):
        self._wake_all = wake_all
        self._followers = 0
        self._period = math.inf
        self._handle: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def following(self, interval: float | None) -> Iterator[None]:
        if interval is None:
            yield
            return
        self._followers += 1
        if interval / 4 < self._period:
            self._period = interval / 4
            if self._handle is not None:
                self._handle.cancel()
            self._handle = asyncio.get_running_loop().call_later(self._period, self._tick)
        try:
            yield
        finally:
            self._followers -= 1

    def _tick(self) -> None:
        self._handle = None
        if not self._followers:
            self._period = math.inf          # the next follower sets its own
            return
        self._wake_all()
        self._handle = asyncio.get_running_loop().call_later(self._period, self._tick)


class IdleClock:
    """One follower's time without events: `due()` is true once per
    `interval` of it (never without an interval); `busy()` on each event."""
    __slots__ = ("interval", "since", "_now")

    def __init__(self, interval: float | None, now: Callable[[], float] | None = None):
        self.interval = interval
        self.since: float | None = None
        self._now = now or asyncio.get_running_loop().time

    def busy(self) -> None:
        self.since = None

    def due(self) -> bool:
        if self.interval is None:
            return False
        now = self._now()
        if self.since is None:
            self.since = now
        elif now - self.since >= self.interval:
            self.since = now
            return True
        return False
