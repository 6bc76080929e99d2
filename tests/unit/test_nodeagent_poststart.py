"""postStart hooks in a pod's sync step (nodeagent/poststart.py) on the hollow runtime."""
from __future__ import annotations

from nodeagent.syncpod import PodSync
from tests.unit.test_nodeagent_syncpod import api_status, created, node


async def test_post_start_hook_success_keeps_the_container(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, lifecycle={"postStart": {"exec": {"command": ["true"]}}}))
    await sync.sync_pod()
    rec = sync.records["c"]
    assert (await agent.runtime.state(rec.cid)).status == "running"
    assert "FailedPostStartHook" not in agent.recorder.reasons()
    sync.watchers.stop_all()


async def test_failing_post_start_hook_kills_the_container_and_it_restarts_with_backoff(tmp_path):
    agent = node(tmp_path)
    sync = PodSync(agent, await created(agent, lifecycle={"postStart": {"exec": {"command": ["false"]}}}))
    await sync.sync_pod()
    rec = sync.records["c"]
    first = rec.cid
    assert (await agent.runtime.state(first)).status == "exited"
    [msg] = [m for r, m in agent.recorder.seen if r == "FailedPostStartHook"]
    assert msg.startswith("Exec lifecycle hook (['false']) for Container \"c\" in Pod \"p_default(")
    assert ("Killing", "FailedPostStartHook") in agent.recorder.seen
    await sync.sync_pod()
    assert rec.waiting_reason == "CrashLoopBackOff"
    assert (await api_status(agent)).container_statuses[0].last_state.terminated.finished_at.seconds > 0
    rec.backoff_until = 0
    await sync.sync_pod()
    assert rec.restart_count == 1 and rec.cid != first
