"""Readiness/startup probes try quietly between counted attempts until their first success."""
from __future__ import annotations

import asyncio

import pytest

from machinery.pb import core_pb2
from nodeagent import probes

REAL_SLEEP = asyncio.sleep            # probes.asyncio is the asyncio module: patched below


class ScriptedRuntime:
    """A hollow runtime whose probe attempts answer from a script (then keep the last answer)."""
    hollow = True

    def __init__(self, answers: list[bool]):
        self.answers, self.attempts = answers, 0

    async def probe(self, kind, probe, container, cid):
        ok = self.answers[min(self.attempts, len(self.answers) - 1)]
        self.attempts += 1
        return ok, "" if ok else "connection refused"


@pytest.fixture
def sleeps(monkeypatch):
    """asyncio.sleep inside probes.py returns at once, records what was asked and moves the
    clock probes.py reads by that much."""
    asked: list[float] = []
    clock = [1000.0]
    monkeypatch.setattr(probes, "monotonic", lambda: clock[0])

    async def fake(delay, *a, **kw):
        asked.append(round(delay, 3))
        clock[0] += delay
        if len(asked) > 200:
            raise asyncio.CancelledError       # end a probe loop that would run forever
        await REAL_SLEEP(0)
    monkeypatch.setattr(probes.asyncio, "sleep", fake)
    return asked


def container(**probe_fields) -> core_pb2.Container:
    c = core_pb2.Container(name="app", image="x")
    for kind, p in probe_fields.items():
        getattr(c, kind).CopyFrom(core_pb2.Probe(period_seconds=10, failure_threshold=3, **p))
    return c


async def run(c, runtime, sleeps, stop_after_result=True):
    """(results, failures) reported; `sleeps` is cut to what was slept before the first result."""
    results, failures = [], []

    def on_result(kind, ok, msg):
        if not results:
            sleeps.append("result")
        results.append((kind, ok))
    cp = probes.ContainerProbes(c, runtime, "cid", "10.0.0.2", on_result,
                                lambda kind, msg: failures.append(kind))
    task = asyncio.create_task(cp.run())
    while not task.done() and not (stop_after_result and results):
        await REAL_SLEEP(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return results, failures


async def test_readiness_is_reported_at_the_first_quiet_success(sleeps):
    rt = ScriptedRuntime([False, False, False, True])       # the app listens after ~0.3 s
    results, failures = await run(container(readiness_probe={}), rt, sleeps)
    assert results == [(probes.READINESS, True)]
    assert failures == [probes.READINESS]                     # only the counted first attempt
    assert sleeps[:5] == [0, 0.1, 0.2, 0.4, "result"]        # initialDelay 0, quiet retries, Ready


async def test_quiet_retries_double_up_to_a_cap(sleeps):
    rt = ScriptedRuntime([False] * 5 + [True])
    results, _ = await run(container(readiness_probe={}), rt, sleeps)
    assert results == [(probes.READINESS, True)]
    assert sleeps[:7] == [0, 0.1, 0.2, 0.4, 0.4, 0.4, "result"]


async def test_startup_failures_keep_kubernetes_schedule(sleeps):
    rt = ScriptedRuntime([False])                              # never starts
    results, failures = await run(container(startup_probe={}), rt, sleeps)
    assert results == [(probes.STARTUP, False)]
    assert failures == [probes.STARTUP] * 3                   # failureThreshold counted attempts only
    assert rt.attempts > 3                                    # the quiet ones in between


async def test_liveness_has_no_quiet_retries(sleeps):
    rt = ScriptedRuntime([False, True])
    results, failures = await run(container(liveness_probe={}), rt, sleeps, stop_after_result=False)
    assert sleeps[:2] == [0, 10]
    assert failures[0] == probes.LIVENESS


async def test_first_attempt_waits_until_the_worker_reported_the_instance():
    """Like the kubelet, which triggers the first readiness run when it builds a status showing
    the container running: no attempt before `reported` is set, then one at once."""
    reported = asyncio.Event()
    rt = ScriptedRuntime([True])
    results, failures = [], []
    cp = probes.ContainerProbes(container(readiness_probe={}), rt, "cid", "10.0.0.2",
                                lambda kind, ok, msg: results.append((kind, ok)),
                                lambda kind, msg: failures.append(kind), reported)
    task = asyncio.create_task(cp.run())
    try:
        await REAL_SLEEP(0.1)
        assert rt.attempts == 0 and results == []
        reported.set()
        for _ in range(100):
            if results:
                break
            await REAL_SLEEP(0.005)
        assert results == [(probes.READINESS, True)] and failures == [] and rt.attempts == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_first_attempt_does_not_wait_for_a_report_forever(monkeypatch):
    """A status write that fails (the apiserver away) delays probing by REPORT_WAIT, no more."""
    monkeypatch.setattr(probes, "REPORT_WAIT", 0.05)
    rt = ScriptedRuntime([True])
    results = []
    cp = probes.ContainerProbes(container(liveness_probe={}, readiness_probe={}), rt, "cid", "10.0.0.2",
                                lambda kind, ok, msg: results.append((kind, ok)),
                                lambda kind, msg: None, asyncio.Event())
    task = asyncio.create_task(cp.run())
    try:
        for _ in range(200):
            if len(results) == 2:
                break
            await REAL_SLEEP(0.005)
        assert sorted(results) == [(probes.LIVENESS, True), (probes.READINESS, True)] and rt.attempts == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
