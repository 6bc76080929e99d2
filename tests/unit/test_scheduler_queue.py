"""SchedulingQueue: priority order, backoff, unschedulable set and moves."""
import asyncio

from scheduler import hollow
from scheduler.framework import pod_info
from scheduler.queue import ACTIVE, BACKOFF, UNSCHEDULABLE, SchedulingQueue


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def info(name, priority=None):
    p = hollow.pod(name)
    if priority is not None:
        p.spec.priority = priority
    return pod_info(p)


def test_fifo_within_priority_and_priority_first():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    for i, prio in enumerate([0, 0, 10, 0]):
        clock.t += 1
        q.add(info(f"p{i}", prio))
    order = [q.pop_nowait().info.name for _ in range(4)]
    assert order == ["p2", "p0", "p1", "p3"]
    assert q.pop_nowait() is None


def test_backoff_doubles_to_ten_seconds():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(info("p"))
    durations = []
    for _ in range(6):
        qp = q.pop_nowait()
        assert qp is not None
        durations.append(q.backoff_duration(qp))
        q.add_backoff(qp)
        assert q.where("default/p") == BACKOFF
        clock.t += durations[-1] - 0.01
        assert q.pop_nowait() is None
        clock.t += 0.02
    assert durations == [1, 2, 4, 8, 10, 10]


def test_unschedulable_waits_for_an_event_then_respects_backoff():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(info("p"))
    qp = q.pop_nowait()
    q.add_unschedulable(qp)
    assert q.where("default/p") == UNSCHEDULABLE
    clock.t += 100
    assert q.pop_nowait() is None                    # no event, no retry
    assert q.lengths() == {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 1}
    assert q.move_all("NodeAdd") == 1
    assert q.where("default/p") == ACTIVE            # backoff (1 s) long over
    qp = q.pop_nowait()
    q.add_unschedulable(qp)
    q.move_all("NodeAdd")
    assert q.where("default/p") == BACKOFF           # second failure: 2 s backoff not over
    clock.t += 2.5
    assert q.pop_nowait().info.name == "p"


def test_move_request_during_scheduling_sends_failure_to_backoff():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(info("p"))
    qp = q.pop_nowait()
    q.move_all("NodeAdd")                           # while p was in flight
    q.add_unschedulable(qp)
    assert q.where("default/p") == BACKOFF


def test_unschedulable_flushed_after_max_duration():
    clock = Clock()
    q = SchedulingQueue(clock=clock, max_unschedulable=300)
    q.add(info("p"))
    q.add_unschedulable(q.pop_nowait())
    clock.t += 299
    q.flush_unschedulable()
    assert q.where("default/p") == UNSCHEDULABLE
    clock.t += 2
    q.flush_unschedulable()
    assert q.where("default/p") == ACTIVE


def test_update_moves_unschedulable_and_delete_removes():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(info("p"))
    q.add_unschedulable(q.pop_nowait())
    clock.t += 5
    q.update(info("p"))
    assert q.where("default/p") == ACTIVE
    q.refresh(info("p"))
    assert q.where("default/p") == ACTIVE
    q.delete("default/p")
    assert q.where("default/p") is None and q.pop_nowait() is None
    assert q.lengths() == {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0}


def test_in_flight_pod_is_not_requeued_by_add():
    q = SchedulingQueue(clock=Clock())
    q.add(info("p"))
    qp = q.pop_nowait()
    q.add(info("p"))
    assert q.pop_nowait() is None and q.where("default/p") == "in-flight"
    q.done(qp.key)
    assert q.where("default/p") is None


def test_deleted_while_in_flight_is_not_requeued():
    q = SchedulingQueue(clock=Clock())
    q.add(info("p"))
    qp = q.pop_nowait()
    q.delete("default/p")
    q.add_unschedulable(qp)
    assert q.where("default/p") is None


async def test_pop_waits_for_add():
    q = SchedulingQueue()
    task = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    assert not task.done()
    q.add(info("p"))
    qp = await asyncio.wait_for(task, 5)
    assert qp.info.name == "p"


async def test_pop_wakes_when_backoff_ends():
    q = SchedulingQueue(initial_backoff=0.01)
    q.add(info("p"))
    q.add_backoff(await q.pop())
    qp = await asyncio.wait_for(q.pop(), 5)
    assert qp.attempts == 2


def test_moves_touch_only_unschedulable_pods():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    for i in range(5):
        q.add(info(f"p{i}"))
    a, b = q.pop_nowait(), q.pop_nowait()
    q.add_unschedulable(a)
    q.add_unschedulable(b)
    assert q.lengths() == {ACTIVE: 3, BACKOFF: 0, UNSCHEDULABLE: 2}
    q.delete(b.key)
    clock.t += 5
    assert q.move_all() == 1 and q.where(a.key) == ACTIVE
    assert q.lengths() == {ACTIVE: 4, BACKOFF: 0, UNSCHEDULABLE: 0}
    assert q.move_all() == 0
