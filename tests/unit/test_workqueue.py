"""Workqueue semantics: dedup, one worker per key, delays, backoff, shutdown, metrics."""
import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from machinery.workqueue import QueueShutDown, RateLimiter, WorkQueue, run_workers


def metric(name, queue):
    return REGISTRY.get_sample_value(name, {"name": queue}) or 0


async def test_add_dedups_and_fifo():
    q = WorkQueue("t-dedup")
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert metric("kctl_workqueue_adds_total", "t-dedup") == 3


async def test_key_added_while_processing_is_requeued_after_done():
    q = WorkQueue("t-processing")
    q.add("a")
    k = await q.get()
    q.add("a")                         # changed while a worker holds it
    assert len(q) == 0                 # not handed to a second worker
    second = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    q.done(k)
    assert await asyncio.wait_for(second, 5) == "a"
    q.done("a")
    assert len(q) == 0


async def test_one_worker_per_key_under_concurrency():
    q = WorkQueue("t-concurrency")
    active, max_active, processed = {}, {}, []

    async def sync(key):
        active[key] = active.get(key, 0) + 1
        max_active[key] = max(max_active.get(key, 0), active[key])
        await asyncio.sleep(0.005)
        q.add(key) if len(processed) < 40 else None    # keep re-adding while busy
        processed.append(key)
        active[key] -= 1

    for k in "abc":
        q.add(k)
    runner = asyncio.ensure_future(run_workers(q, sync, 8))
    while len(processed) < 60:
        await asyncio.sleep(0.01)
        if len(processed) >= 40 and len(q) == 0:
            break
    q.shutdown()
    await asyncio.wait_for(runner, 5)
    assert max(max_active.values()) == 1
    assert set(processed) == {"a", "b", "c"}


async def test_add_after_keeps_earliest_and_fires():
    q = WorkQueue("t-after")
    q.add_after("a", 0.3)
    q.add_after("a", 0.05)             # earlier wins
    q.add_after("a", 0.5)              # later is ignored
    t0 = time.monotonic()
    assert await asyncio.wait_for(q.get(), 5) == "a"
    assert time.monotonic() - t0 < 0.29
    q.done("a")
    await asyncio.sleep(0.6)
    assert len(q) == 0                 # the superseded timers did not fire


def test_rate_limiter_exponential_with_cap_and_forget():
    rl = RateLimiter(base_delay=0.01, max_delay=0.1)
    assert [rl.when("k") for _ in range(6)] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    assert rl.num_requeues("k") == 6
    assert rl.when("other") == pytest.approx(0.01)
    rl.forget("k")
    assert rl.num_requeues("k") == 0 and rl.when("k") == pytest.approx(0.01)


def test_token_bucket():
    now = [0.0]
    rl = RateLimiter(base_delay=0.0, max_delay=0.0, qps=10, burst=2, clock=lambda: now[0])
    assert rl.when("a") == 0 and rl.when("b") == 0
    assert rl.when("c") == pytest.approx(0.1)
    assert rl.when("d") == pytest.approx(0.2)
    now[0] = 10.0                      # refilled up to the burst
    assert rl.when("e") == 0


async def test_add_rate_limited_backs_off_and_counts_retries():
    q = WorkQueue("t-ratelimited", base_delay=0.05, max_delay=1)
    before = metric("kctl_workqueue_retries_total", "t-ratelimited")
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 2
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 5) == "a"
    assert metric("kctl_workqueue_retries_total", "t-ratelimited") - before == 2
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_run_workers_retries_failures_then_forgets():
    q = WorkQueue("t-workers", base_delay=0.01)
    calls = []

    async def sync(key):
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("boom")

    q.add("a")
    runner = asyncio.ensure_future(run_workers(q, sync, 2))
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert calls == ["a", "a", "a"] and q.num_requeues("a") == 0
    q.shutdown()
    await asyncio.wait_for(runner, 5)
    assert metric("kctl_workqueue_work_duration_seconds_count", "t-workers") == 3
    assert metric("kctl_workqueue_depth", "t-workers") == 0


async def test_run_workers_max_retries_and_plain_sync():
    q = WorkQueue("t-maxretries", base_delay=0.001)
    calls = []

    def sync(key):
        calls.append(key)
        raise ValueError("always")

    q.add("a")
    runner = asyncio.ensure_future(run_workers(q, sync, 1, max_retries=3))
    while len(calls) < 4:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(calls) == 4             # first try + 3 retries, then dropped
    q.shutdown()
    await asyncio.wait_for(runner, 5)


async def test_shutdown_drains_then_raises_and_wakes_waiters():
    q = WorkQueue("t-shutdown")
    waiter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    q.shutdown()
    with pytest.raises(QueueShutDown):
        await asyncio.wait_for(waiter, 5)
    q2 = WorkQueue("t-shutdown2")
    q2.add("a")
    q2.add_after("b", 0.01)
    q2.shutdown()
    q2.add("c")                        # ignored
    assert await q2.get() == "a"
    with pytest.raises(QueueShutDown):
        await q2.get()


async def test_cancelled_waiter_passes_wakeup_on():
    q = WorkQueue("t-cancel")
    w1 = asyncio.ensure_future(q.get())
    w2 = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    q.add("a")                          # wakes w1 ...
    w1.cancel()                         # ... which is cancelled before it runs
    assert await asyncio.wait_for(w2, 5) == "a"
