"""kubectl's commands that need the controllers: `wait --for=condition=Available`
and `rollout status|history|undo`, with a real kctl-controller-manager and
simulated nodes (tests.integration.test_controllers_sim.SimNodes) making
the pods Running and Ready. kubectl runs in a thread so the simulated
nodes keep working on the test's event loop meanwhile."""
from __future__ import annotations

import asyncio
import re

import yaml

from machinery.client import Client
from tests.integration.test_controllers_manager import ControllerManager
from tests.integration.test_controllers_sim import SimNodes


def deployment(image: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "roll"}},
                 "template": {"metadata": {"labels": {"app": "roll"}},
                              "spec": {"nodeName": "sim-1", "containers": [{"name": "app", "image": image}]}}}})


async def test_wait_available_and_rollout_status_history_undo(kube, tmp_path):
    async def kubectl(*args, input=None):
        return await asyncio.to_thread(kube.ok, *args, input=input, timeout=90)

    cm = ControllerManager(tmp_path, kube.apiserver.target)
    cm.start()
    async with Client(kube.apiserver.target) as client:
        sim = SimNodes(client)
        await sim.add("sim-1")
        await sim.start()
        try:
            await kubectl("apply", "-f", "-", input=deployment("nginx:1.27"))
            out = await kubectl("wait", "--for=condition=Available", "deploy/roll", "--timeout=60s")
            assert out.strip() == "deployment.apps/roll condition met"
            out = await kubectl("rollout", "status", "deploy/roll", "--timeout=60s")
            assert 'deployment "roll" successfully rolled out' in out
            await kubectl("apply", "-f", "-", input=deployment("nginx:1.28"))
            out = await kubectl("rollout", "status", "deploy/roll", "--timeout=60s")
            assert 'deployment "roll" successfully rolled out' in out
            history = await kubectl("rollout", "history", "deploy/roll")
            assert re.findall(r"^(\d+)\s", history, re.M) == ["1", "2"]
            assert (await kubectl("rollout", "undo", "deploy/roll")).strip() == "deployment.apps/roll rolled back"
            await kubectl("rollout", "status", "deploy/roll", "--timeout=60s")
            image = await kubectl("get", "deploy", "roll", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
            assert image == "nginx:1.27"
            pods = await kubectl("get", "pods", "-l", "app=roll", "-o", "wide", "--no-headers")
            assert len(pods.strip().splitlines()) == 2 and all("Running" in ln for ln in pods.splitlines())
        finally:
            await sim.stop()
            cm.stop()
