"""Cancelling an exec (through the apiserver proxy, as ``kctl exec`` + Ctrl-C does) ends the
exec'd command inside the container, children included — not only the ``runc exec`` process.

The container's processes are found through /proc: every process whose cgroup
path contains the container id (the container's cgroup, design §4).
"""
from __future__ import annotations

import asyncio
import os

import pytest

from machinery import nodeclient
from machinery.pb import core_pb2
from nodeagent.errors import ExecTimeout
from nodeagent.runtime import Runtime
from tests.integration.nodeagent.conftest import (cid_of, make_pod, needs_root, node_ready, pod_gone, pod_running,
                                                  wait_for)

pytestmark = [pytest.mark.root, needs_root]


def container_cmdlines(cid: str) -> list[str]:
    """Command lines of the processes in the container's cgroup (any hierarchy)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if cid not in f.read():
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
        except OSError:
            continue
    return out


def has(cid: str, text: str) -> bool:
    return any(text in c for c in container_cmdlines(cid))


async def test_cancelled_exec_kills_the_command_and_its_children(api, make_node, cluster):
    node = make_node("xcancel")
    await node_ready(api, node)
    await api.create(make_pod("xshell", node, {"name": "c", "image": "busybox", "command": ["sleep", "3600"]},
                              terminationGracePeriodSeconds=1))
    try:
        cid = cid_of(await pod_running(api, "xshell", node), "c")
        assert has(cid, "sleep 3600")          # the /proc lookup sees the container's processes
        cases = [["sleep", "777"],                                   # the reported case
                 ["sh", "-c", "sleep 778; echo never"],              # a shell with a child
                 ["sh", "-c", "sleep 779 & sleep 780; wait"]]        # a background child too
        for command in cases:
            stream = nodeclient.exec_(cluster.target, "default", "xshell", "c", command)
            reader = asyncio.create_task(anext(stream, None))
            marker = command[-1].split(";")[0].split("&")[0].strip() if command[0] == "sh" else " ".join(command)
            await wait_for(lambda m=marker: has(cid, m), 20, f"{command} running in the container", node)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.aclose()
            gone = ["sleep 777", "sleep 778", "sleep 779", "sleep 780", "sh -c"]
            await wait_for(lambda: not any(has(cid, g) for g in gone), 20,
                           f"{command}: nothing left in the container", node)
            assert has(cid, "sleep 3600")      # the container itself keeps running
        # Runtime.exec (probes, preStop) on timeout: the same, children included
        rt = Runtime(node.root / "runtime", cgroup_parent=node.cgroup_parent, state_dir=node.state_dir)
        with pytest.raises(ExecTimeout):
            await rt.exec(cid, ["sh", "-c", "sleep 781 & sleep 782; wait"], timeout=1)
        await wait_for(lambda: not has(cid, "sleep 78"), 20, "timed-out exec: nothing left", node)
        # and a cancelled Runtime.exec
        task = asyncio.create_task(rt.exec(cid, ["sh", "-c", "sleep 783; echo never"], timeout=60))
        await wait_for(lambda: has(cid, "sleep 783"), 20, "exec running", node)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await wait_for(lambda: not has(cid, "sleep 783") and not has(cid, "sh -c"), 20,
                       "cancelled Runtime.exec: nothing left", node)
        p = await api.get(core_pb2.Pod, "xshell", "default")
        assert p.status.container_statuses[0].state.HasField("running")
        assert p.status.container_statuses[0].restart_count == 0
    finally:
        await api.delete(core_pb2.Pod, "xshell", "default", grace_period=1)
        await pod_gone(api, "xshell", node)
