"""Restart policies, CrashLoopBackOff, probes and graceful deletion on a real agent (--crashloop-base 1)."""
from __future__ import annotations

import asyncio
import time

import pytest

from machinery.pb import core_pb2
from tests.integration.nodeagent.conftest import (cid_of, cstatus, make_pod, needs_root, node_ready, pod_gone,
                                                  pod_running, pod_where)

pytestmark = [pytest.mark.root, needs_root]
BASE = 1.0   # the agents' --crashloop-base


@pytest.fixture
async def node(api, make_node):
    n = make_node()
    await node_ready(api, n)
    return n


def ready(p: core_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


async def test_crashloop_backoff_schedule(api, node):
    runs: dict[int, tuple[float, float]] = {}     # restart count -> (started, finished) of that instance
    reasons: set[str] = set()

    async def watch():
        async for ev in api.watch(core_pb2.Pod, "default", field_selector="metadata.name=crasher"):
            if ev.object is None or not ev.object.status.container_statuses:
                continue
            cs = ev.object.status.container_statuses[0]
            reasons.add(cs.state.waiting.reason)
            t = cs.state.terminated if cs.state.HasField("terminated") else (
                cs.last_state.terminated if cs.state.HasField("waiting") and cs.last_state.HasField("terminated")
                else None)
            if t is not None and t.HasField("finished_at"):
                runs[cs.restart_count] = (t.started_at.ToNanoseconds() / 1e9, t.finished_at.ToNanoseconds() / 1e9)
    watcher = asyncio.create_task(watch())
    try:
        await api.create(make_pod("crasher", node, {"name": "c", "image": "busybox",
                                                    "command": ["sh", "-c", "exit 1"]}))
        pod = await pod_where(api, "crasher", lambda p: p.status.container_statuses and
                              cstatus(p, "c").restart_count >= 3 and 3 in runs, "3 restarts", node, timeout=120)
    finally:
        watcher.cancel()
    assert "CrashLoopBackOff" in reasons
    assert pod.status.phase == "Running"                       # restartPolicy Always keeps it Running
    for k in range(3):
        delay = runs[k + 1][0] - runs[k][1]                    # exit of instance k -> start of k+1
        assert delay >= BASE * 2 ** k - 0.1, (k, delay, runs)
    events, _ = await api.list("Event", "default")
    assert any(e.reason == "BackOff" and e.involved_object.name == "crasher" for e in events)
    await api.delete(core_pb2.Pod, "crasher", "default", grace_period=1)
    await pod_gone(api, "crasher", node)


async def test_readiness_exec_and_tcp_flip_ready(api, node):
    await api.create(make_pod("readyx", node, {
        "name": "c", "image": "busybox", "command": ["sleep", "3600"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1,
                           "failureThreshold": 1}}))
    await api.create(make_pod("readyt", node, {
        "name": "c", "image": "busybox", "ports": [{"name": "svc", "containerPort": 9000}],
        "command": ["sh", "-c", "sleep 3; exec httpd -f -p 9000 -h /tmp"],
        "readinessProbe": {"tcpSocket": {"port": "svc"}, "periodSeconds": 1}}))
    pod = await pod_running(api, "readyx", node)
    assert not ready(pod) and not cstatus(pod, "c").ready          # file not there yet
    node.runc_exec(cid_of(pod, "c"), "touch", "/tmp/ready")
    pod = await pod_where(api, "readyx", ready, "Ready", node)
    node.runc_exec(cid_of(pod, "c"), "rm", "/tmp/ready")
    pod = await pod_where(api, "readyx", lambda p: not ready(p), "not Ready again", node)
    assert cstatus(pod, "c").restart_count == 0                    # readiness never restarts
    assert {c.type: c.reason for c in pod.status.conditions}["Ready"] == "ContainersNotReady"
    pod = await pod_where(api, "readyt", ready, "tcp readiness", node)
    assert cstatus(pod, "c").ready
    for name in ("readyx", "readyt"):
        await api.delete(core_pb2.Pod, name, "default", grace_period=1)
        await pod_gone(api, name, node)


async def test_liveness_http_restarts_and_startup_probe(api, node):
    await api.create(make_pod("live", node, {
        "name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}],
        "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 5,
                          "failureThreshold": 2, "terminationGracePeriodSeconds": 1}}))
    await api.create(make_pod("startup", node, {
        "name": "c", "image": "busybox", "command": ["sleep", "3600"],
        "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2,
                         "terminationGracePeriodSeconds": 1},
        "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}))
    pod = await pod_running(api, "live", node)
    first = cid_of(pod, "c")
    await asyncio.sleep(2.5)                                        # healthy probes do nothing
    pod = await api.get(core_pb2.Pod, "live", "default")
    assert cid_of(pod, "c") == first and cstatus(pod, "c").restart_count == 0
    node.runc_exec(first, "rm", "/www/healthz")                     # now 404
    pod = await pod_where(api, "live", lambda p: cstatus(p, "c").restart_count >= 1 and all_run(p),
                          "restarted by liveness", node)
    assert cid_of(pod, "c") != first
    assert cstatus(pod, "c").last_state.terminated.exit_code in (137, 143, 0)
    events, _ = await api.list("Event", "default")
    live_ev = [(e.reason, e.message) for e in events if e.involved_object.name == "live"]
    assert any(r == "Unhealthy" and "Liveness probe failed" in m and "404" in m for r, m in live_ev), live_ev
    assert any(r == "Killing" and "failed liveness probe" in m for r, m in live_ev), live_ev

    pod = await pod_where(api, "startup", lambda p: p.status.container_statuses and
                          cstatus(p, "c").restart_count >= 1, "restarted by startup probe", node)
    cs = cstatus(pod, "c")
    assert not cs.started and not cs.ready
    for name in ("live", "startup"):
        await api.delete(core_pb2.Pod, name, "default", grace_period=1)
        await pod_gone(api, name, node)


def all_run(p: core_pb2.Pod) -> bool:
    return all(c.state.HasField("running") for c in p.status.container_statuses)


async def test_graceful_deletion_prestop_sigterm_and_grace(api, node, tmp_path, privileged_default):
    data = tmp_path / "data"
    data.mkdir()
    await api.create(make_pod("graceful", node, {
        "name": "polite", "image": "busybox",
        "command": ["sh", "-c", "trap 'echo term >> /data/log; exit 0' TERM; "
                                "while true; do sleep 0.1; done"],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /data/log"]}}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        {"name": "stubborn", "image": "busybox", "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]},
        volumes=[{"name": "data", "hostPath": {"path": str(data), "type": "Directory"}}],
        terminationGracePeriodSeconds=30))
    await pod_running(api, "graceful", node)
    t0 = time.monotonic()
    await api.delete(core_pb2.Pod, "graceful", "default", grace_period=3)
    await pod_gone(api, "graceful", node)
    took = time.monotonic() - t0
    assert took >= 3 - 0.2, took                                     # the stubborn one got the whole grace
    assert (data / "log").read_text().split() == ["prestop", "term"]
    events, _ = await api.list("Event", "default")
    assert {e.message for e in events if e.involved_object.name == "graceful" and e.reason == "Killing"} >= {
        "Stopping container polite", "Stopping container stubborn"}
