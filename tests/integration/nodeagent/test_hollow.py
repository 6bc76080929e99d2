"""Hollow mode: many fake agents in one process register, heartbeat and run pods (no root needed)."""
from __future__ import annotations

import asyncio
import time

from machinery.pb import apps_pb2, core_pb2
from nodeagent.main import build_agent

N_AGENTS = 50


async def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await pred()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def pod(name: str, node: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.node_name = node
    p.spec.containers.add(name="c", image="busybox")
    return p


async def test_fifty_hollow_agents_register_and_run_pods(client, tmp_path):
    agents = [build_agent(client, node_name=f"hollow-{i}", node_ip=f"10.99.{i // 250}.{i % 250 + 1}",
                          root_dir=str(tmp_path / f"n{i}"), runtime="fake", pod_cidr=f"10.200.{i}.0/24",
                          heartbeat_interval=1.0, crashloop_base=0.2)
              for i in range(N_AGENTS)]
    tasks = [asyncio.create_task(a.run()) for a in agents]
    try:
        await wait_for(lambda: _all_ready(agents, tasks), 60, "agents ready")

        async def nodes_ready():
            nodes, _ = await client.list(core_pb2.Node)
            ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
            return len(ready) == N_AGENTS
        await wait_for(nodes_ready, 60, "50 Ready nodes")
        leases, _ = await client.list(apps_pb2.Lease, "kube-node-lease")
        assert {le.metadata.name for le in leases} >= {f"hollow-{i}" for i in range(N_AGENTS)}
        node = await client.get(core_pb2.Node, "hollow-3")
        assert node.spec.pod_cidr == "10.200.3.0/24"
        assert node.metadata.annotations["kctl.io/agent-endpoint"] == "10.99.0.4:10250"
        assert node.status.capacity["pods"] == "110"

        for i in range(N_AGENTS * 2):
            await client.create(pod(f"p{i}", f"hollow-{i % N_AGENTS}"))

        async def all_running():
            pods, _ = await client.list(core_pb2.Pod, "default")
            running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip
                       and all(c.ready for c in p.status.container_statuses)]
            return len(running) == N_AGENTS * 2 and pods
        pods = await wait_for(all_running, 60, "100 pods Running")
        for p in pods:
            i = int(p.spec.node_name.split("-")[1])
            assert p.status.pod_ip.startswith(f"10.200.{i}.")
            assert p.status.host_ip == f"10.99.{i // 250}.{i % 250 + 1}"
            assert {c.type: c.status for c in p.status.conditions}["Ready"] == "True"
            assert p.status.container_statuses[0].container_id.startswith("runc://")
        # one lease renewal later the lease time moves
        before = (await client.get(apps_pb2.Lease, "hollow-0", "kube-node-lease")).spec.renew_time.ToNanoseconds()

        async def renewed():
            le = await client.get(apps_pb2.Lease, "hollow-0", "kube-node-lease")
            return le.spec.renew_time.ToNanoseconds() > before
        await wait_for(renewed, 10, "lease renewed")

        for p in pods:
            await client.delete(core_pb2.Pod, p.metadata.name, "default")

        async def all_gone():
            pods, _ = await client.list(core_pb2.Pod, "default")
            return not pods
        await wait_for(all_gone, 60, "pods deleted by their agents")
        assert all(not a.network.list_allocations() for a in agents)
        assert all(not a.workers for a in agents)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _all_ready(agents, tasks):
    for t in tasks:
        if t.done():
            t.result()   # surface the failure
    return all(a.ready.is_set() for a in agents)


async def test_hollow_nodes_from_the_command_line(client, apiserver, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.cluster import REPO
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(tmp_path / "hollow.log", "wb")
    from harness.pki import session
    # one identity per hollow node (the Node authorizer lets system:node:cli-i act for cli-i only)
    confs = [session().node_kubeconfig(f"cli-{i}", f"10.98.0.{i + 1}") for i in range(5)]
    proc = subprocess.Popen([sys.executable, "-m", "nodeagent.main", "--apiserver", apiserver.target,
                             "--hollow-kubeconfig-dir", str(confs[0].parent),
                             "--node-name", "cli", "--node-ip", "10.98.0.1", "--root-dir", str(tmp_path / "h"),
                             "--runtime", "fake", "--hollow-nodes", "5", "--pod-cidr", "10.201.0.0/16",
                             "--capacity", "cpu=8,memory=32Gi"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
    try:
        async def ready():
            assert proc.poll() is None, (tmp_path / "hollow.log").read_text()
            nodes, _ = await client.list(core_pb2.Node)
            return sorted(n.metadata.name for n in nodes
                          if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions))
        names = await wait_for(lambda: _five(ready), 60, "5 hollow nodes Ready")
        assert names == [f"cli-{i}" for i in range(5)]
        n4 = await client.get(core_pb2.Node, "cli-4")
        assert n4.spec.pod_cidr == "10.201.4.0/24" and n4.status.capacity["cpu"] == "8"
        assert {a.type: a.address for a in n4.status.addresses}["InternalIP"] == "10.98.0.5"
        await client.create(pod("cli-pod", "cli-2"))

        async def running():
            p = await client.get(core_pb2.Pod, "cli-pod", "default")
            return p.status.phase == "Running" and p.status.pod_ip.startswith("10.201.2.")
        await wait_for(running, 30, "pod running on a hollow node")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


async def _five(ready):
    names = await ready()
    return names if len(names) == 5 else None
