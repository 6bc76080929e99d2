"""Waiting on a cluster through the API: a node Ready, a pod in a state, a
pod gone — polling, with the agent's log in the failure message when a
`Node` (harness.nodes) is given; and `make_pod`, a pod already bound to a node."""
from __future__ import annotations

import asyncio
import json
import time

from machinery.pb import core_pb2


async def wait_for(pred, timeout: float, what: str, node=None):
    """Poll an async (or sync) predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if node is not None and node.proc is not None and node.proc.poll() is not None:
            raise AssertionError(f"agent exited with {node.proc.returncode} while waiting for {what}:\n"
                                 f"{node.log_tail()}")
        await asyncio.sleep(0.2)
    extra = f"\nagent log:\n{node.log_tail()}" if node is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){extra}")


async def node_ready(client, node, timeout: float = 60) -> None:
    async def ready():
        try:
            n = await client.get(core_pb2.Node, node.name)
        except Exception:  # noqa: BLE001
            return False
        return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
    await wait_for(ready, timeout, f"node {node.name} Ready", node)


def make_pod(name: str, node, *containers: dict, **spec) -> core_pb2.Pod:
    from machinery import codec
    d = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
         "spec": {"nodeName": node.name, "containers": list(containers), **spec}}
    return codec.from_dict(json.loads(json.dumps(d)))


def cstatus(pod: core_pb2.Pod, name: str) -> core_pb2.ContainerStatus:
    return next(c for c in pod.status.container_statuses if c.name == name)


def cid_of(pod: core_pb2.Pod, name: str) -> str:
    return cstatus(pod, name).container_id.removeprefix("runc://")


async def pod_where(api, name: str, pred, what: str, node=None, timeout: float = 90):
    """Wait until pred(pod) holds for the pod; returns the pod."""
    async def check():
        p = await api.get(core_pb2.Pod, name, "default")
        return p if pred(p) else None
    return await wait_for(check, timeout, f"pod {name}: {what}", node)


def all_running(p: core_pb2.Pod) -> bool:
    return (p.status.phase == "Running" and bool(p.status.container_statuses)
            and all(c.state.HasField("running") for c in p.status.container_statuses))


async def pod_running(api, name: str, node=None, timeout: float = 90) -> core_pb2.Pod:
    return await pod_where(api, name, all_running, "all containers running", node, timeout)


async def pod_gone(api, name: str, node=None, timeout: float = 60) -> None:
    from machinery import errors

    async def pred():
        try:
            await api.get(core_pb2.Pod, name, "default")
            return False
        except errors.NotFound:
            return True
    await wait_for(pred, timeout, f"pod {name} deleted", node)
