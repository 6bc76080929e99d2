"""Leader election through a real apiserver: one leader at a time, a clean
stop hands over at once, a SIGKILLed leader (separate process) is replaced
within lease_duration + retry_period, and a leader cut off from the
apiserver for longer than renew_deadline stops leading."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from machinery.client import Client
from machinery.leaderelection import LeaderElector, LeadershipLost
from tests.cluster import REPO

LEASE, RENEW, RETRY = 2.0, 1.5, 0.3
TIMING = dict(lease_duration=LEASE, renew_deadline=RENEW, retry_period=RETRY)


async def until(cond, timeout=20.0, step=0.02):
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(step)


async def cancel(*tasks):
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def forever():
    return asyncio.Event().wait()


async def holder(client) -> str:
    return (await client.get("Lease", "kctl-test", "kube-system")).spec.holder_identity


async def test_one_leader_at_a_time_and_clean_handover(apiserver):
    clients = [Client(apiserver.target) for _ in range(3)]
    electors = [LeaderElector(c, "kctl-test", f"cand-{i}", **TIMING) for i, c in enumerate(clients)]
    tasks = [asyncio.create_task(e.run(forever)) for e in electors]
    try:
        await until(lambda: any(e.is_leader for e in electors))
        samples = 0
        for _ in range(60):                       # ~3 s, several renewals
            assert sum(e.is_leader for e in electors) == 1
            samples += 1
            await asyncio.sleep(0.05)
        (leader,) = [i for i, e in enumerate(electors) if e.is_leader]
        assert await holder(clients[0]) == f"cand-{leader}"
        assert all(e.leader == f"cand-{leader}" for e in electors)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await cancel(tasks[leader])               # clean stop: the lease is released
        await until(lambda: any(e.is_leader for e in electors))
        assert loop.time() - t0 < LEASE           # no need to wait for expiry
        assert sum(e.is_leader for e in electors) == 1
        lease = await clients[0].get("Lease", "kctl-test", "kube-system")
        assert lease.spec.holder_identity != f"cand-{leader}" and lease.spec.lease_transitions == 1
    finally:
        await cancel(*tasks)
        for c in clients:
            await c.close()


CANDIDATE = textwrap.dedent("""
    import asyncio, sys
    from machinery.client import Client
    from machinery.leaderelection import LeaderElector

    async def main(target):
        async with Client(target) as c:
            e = LeaderElector(c, "kctl-test", "doomed", lease_duration={lease}, renew_deadline={renew},
                              retry_period={retry})
            async def lead():
                print("LEADING", flush=True)
                await asyncio.Event().wait()
            await e.run(lead)
    asyncio.run(main(sys.argv[1]))
""")


async def test_killed_leader_is_replaced_within_lease_duration(apiserver, client):
    script = CANDIDATE.format(lease=LEASE, renew=RENEW, retry=RETRY)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script, apiserver.target], stdout=subprocess.PIPE,
                            cwd=REPO, env=env, start_new_session=True)
    other = LeaderElector(client, "kctl-test", "survivor", **TIMING)
    led = asyncio.Event()

    async def lead():
        led.set()
        await asyncio.Event().wait()
    task = None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == b"LEADING"
        task = asyncio.create_task(other.run(lead))
        await asyncio.sleep(1.5)
        assert not led.is_set() and other.leader == "doomed"
        loop = asyncio.get_running_loop()
        os.kill(proc.pid, signal.SIGKILL)         # no release: the lease must expire
        t0 = loop.time()
        await asyncio.wait_for(led.wait(), 20)
        took = loop.time() - t0
        assert LEASE - RETRY - 0.5 < took < LEASE + RETRY + 1.5
        lease = await client.get("Lease", "kctl-test", "kube-system")
        assert lease.spec.holder_identity == "survivor" and lease.spec.lease_transitions == 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if task:
            await cancel(task)


async def test_leader_cut_off_from_apiserver_stops_leading(apiserver, client):
    stopped = asyncio.Event()
    work_cancelled = asyncio.Event()

    async def lead():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            work_cancelled.set()
            raise
    e = LeaderElector(client, "kctl-test", "lonely", **TIMING)
    task = asyncio.create_task(e.run(lead, stopped.set))
    try:
        await until(lambda: e.is_leader)
        await asyncio.to_thread(apiserver.stop)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(task, 20)
        assert loop.time() - t0 < RENEW + RETRY + 2.0     # gave up before the lease could expire for others
        assert work_cancelled.is_set() and stopped.is_set() and not e.is_leader
    finally:
        await cancel(task)
