"""apiserver.bookmarks: a follower's idle clock, and the one timer per watch cache that wakes
followers while any wants bookmarks."""
from __future__ import annotations

import asyncio

from apiserver.bookmarks import IdleClock, Ticks


async def until(cond) -> None:
    """Wait for cond() (a broken timer fails here rather than hanging the suite)."""
    async def poll():
        while not cond():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), 10)


def test_idle_clock_is_due_once_per_interval_without_events():
    t = [100.0]
    idle = IdleClock(1.0, now=lambda: t[0])
    assert not idle.due()            # starts counting at the first wait
    t[0] = 100.9
    assert not idle.due()
    t[0] = 101.0
    assert idle.due()
    assert not idle.due()            # counts again from there
    t[0] = 102.1
    assert idle.due()


def test_idle_clock_restarts_on_an_event_and_never_due_without_interval():
    t = [0.0]
    idle = IdleClock(1.0, now=lambda: t[0])
    idle.due()
    t[0] = 0.8
    idle.busy()                      # an event: the interval starts over at the next wait
    t[0] = 1.2
    assert not idle.due()
    t[0] = 2.2
    assert idle.due()
    never = IdleClock(None, now=lambda: t[0])
    t[0] = 1e9
    assert not never.due() and not never.due()


async def test_ticks_wake_while_someone_follows_with_an_interval():
    woken = []
    ticks = Ticks(lambda: woken.append(1))
    with ticks.following(None):      # no bookmarks asked: no timer
        await asyncio.sleep(0.05)
    assert woken == []
    with ticks.following(0.08):      # a wake every 0.02 s
        await until(lambda: len(woken) >= 3)
    await asyncio.sleep(0.05)        # the next tick sees nobody and stops the timer
    stopped_at = len(woken)
    await asyncio.sleep(0.1)
    assert len(woken) == stopped_at
    with ticks.following(0.08):      # a new follower starts it again
        await until(lambda: len(woken) >= stopped_at + 2)


async def test_ticks_follow_the_shortest_interval():
    woken = []
    ticks = Ticks(lambda: woken.append(asyncio.get_running_loop().time()))
    with ticks.following(3600.0):    # a timer a quarter of an hour away
        assert woken == []
        with ticks.following(0.04):  # re-armed for the shorter one
            await until(lambda: len(woken) >= 2)
