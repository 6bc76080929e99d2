"""A status rewritten by someone else (the node lifecycle controller's Ready=False for pods of a
silent node) is put right by the agent from what it knows about the pod's containers."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from machinery.pb import core_pb2
from tests.cluster import REPO
from tests.integration.nodeagent.conftest import make_pod, needs_root, node_ready, pod_gone, pod_where

pytestmark = [pytest.mark.root, needs_root]


def ready(p: core_pb2.Pod) -> str:
    return next((c.status for c in p.status.conditions if c.type == "Ready"), "")


async def test_agent_restores_ready_after_foreign_status_write(api, make_node):
    node = make_node("repost")
    await node_ready(api, node)
    await api.create(make_pod("steady", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]},
                              terminationGracePeriodSeconds=1))
    try:
        p = await pod_where(api, "steady", lambda p: p.status.phase == "Running" and ready(p) == "True",
                            "Running and Ready", node)
        for c in p.status.conditions:          # what controllers/nodelifecycle.py does for a silent node
            if c.type in ("Ready", "ContainersReady"):
                c.status, c.reason, c.message = "False", "NodeNotReady", f"Node {node.name} is not responding"
                c.last_transition_time.GetCurrentTime()
        marked = await api.update_status(p)
        assert ready(marked) == "False"
        p = await pod_where(api, "steady", lambda p: ready(p) == "True", "Ready=True again", node, timeout=15)
        cond = {c.type: c for c in p.status.conditions}
        assert cond["ContainersReady"].status == "True" and cond["Ready"].reason == ""
        assert p.status.container_statuses[0].state.HasField("running")
        assert p.status.container_statuses[0].restart_count == 0
        # put right once: our own write's echo does not make the agent write again
        rv = p.metadata.resource_version
        await asyncio.sleep(2)
        assert (await api.get(core_pb2.Pod, "steady", "default")).metadata.resource_version == rv
    finally:
        await api.delete(core_pb2.Pod, "steady", "default", grace_period=1)
        await pod_gone(api, "steady", node)


async def test_pod_ready_again_after_node_silence(api, make_node, cluster, tmp_path):
    """The real node lifecycle controller: the agent is frozen (SIGSTOP) until its node goes
    Unknown and its pod is marked Ready=False; once thawed, the agent puts Ready=True back."""
    node = make_node("silent")
    await node_ready(api, node)
    await api.create(make_pod("quiet", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]},
                              terminationGracePeriodSeconds=1,
                              tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                            "effect": "NoExecute"}]))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(tmp_path / "controller-manager.log", "wb")
    cm = subprocess.Popen([sys.executable, "-m", "controllers.main", "--apiserver", cluster.target,
                           "--controllers", "nodelifecycle", "--node-monitor-grace-period", "3s"],
                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
    stopped = False
    try:
        await pod_where(api, "quiet", lambda p: p.status.phase == "Running" and ready(p) == "True",
                        "Running and Ready", node)
        os.kill(node.proc.pid, signal.SIGSTOP)
        stopped = True
        p = await pod_where(api, "quiet", lambda p: ready(p) == "False", "marked Ready=False by the controller",
                            timeout=60)
        assert next(c for c in p.status.conditions if c.type == "Ready").reason == "NodeNotReady"
        os.kill(node.proc.pid, signal.SIGCONT)
        stopped = False
        p = await pod_where(api, "quiet", lambda p: ready(p) == "True", "Ready=True again", node, timeout=60)
        assert p.status.container_statuses[0].state.HasField("running")
        assert p.status.container_statuses[0].restart_count == 0
    finally:
        if stopped:
            os.kill(node.proc.pid, signal.SIGCONT)
        cm.terminate()
        try:
            cm.wait(15)
        except subprocess.TimeoutExpired:
            cm.kill()
            cm.wait()
        log.close()
        await api.delete(core_pb2.Pod, "quiet", "default", grace_period=1)
        await pod_gone(api, "quiet", node)
