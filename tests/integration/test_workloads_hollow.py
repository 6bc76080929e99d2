"""DaemonSets and Jobs with HOLLOW node agents (the real agent code on fake
containers, tests/integration/test_controllers_hollow.py), the real
scheduler and controller manager, on a real apiserver: a DaemonSet's pods
are bound by the scheduler through their metadata.name affinity and run by
the agents; a Job's pods complete when their container exits 0.
"""
import asyncio

from machinery import kinds, workloads

from tests.integration.test_controllers_hollow import Hollow, live, ready
from tests.integration.test_controllers_sim import ControlPlane, until

POD_UID_LABEL = "kctl.io/pod-uid"       # what the agent puts on its containers


async def test_daemonset_and_job_on_hollow_nodes(client, tmp_path):
    cp = ControlPlane(client, "--job-backoff", "200ms")
    await cp.start()
    hollow = Hollow(client, tmp_path)
    for i, n in enumerate(("h0", "h1")):
        hollow.start(n, i)
    try:
        ds = kinds.new("DaemonSet")
        ds.metadata.name, ds.metadata.namespace = "agent", "default"
        ds.spec.selector.match_labels["app"] = "agent"
        ds.spec.template.metadata.labels["app"] = "agent"
        ds.spec.template.spec.containers.add(name="main", image="agent:v1")
        await client.create(ds)

        async def one_per_node(n):
            pods = [p for p in await live(client) if p.metadata.labels.get("app") == "agent"]
            return len(pods) == n and len({p.spec.node_name for p in pods}) == n and all(ready(p) for p in pods)
        await until(lambda: one_per_node(2), "a ready daemon pod on h0 and h1")
        hollow.start("h2", 2)
        await until(lambda: one_per_node(3), "h2 got its daemon pod", timeout=90)

        job = kinds.new("Job")
        job.metadata.name, job.metadata.namespace = "count", "default"
        job.spec.completions, job.spec.parallelism, job.spec.completion_mode = 3, 3, "Indexed"
        job.spec.template.spec.restart_policy = "Never"
        job.spec.template.spec.containers.add(name="main", image="worker:v1")
        await client.create(job)

        async def job_pods_running():
            pods = [p for p in await live(client) if workloads.JOB_NAME in p.metadata.labels]
            return pods if len(pods) == 3 and all(p.status.phase == "Running" for p in pods) else None
        pods = await until(job_pods_running, "3 job pods running")
        uids = {p.metadata.uid for p in pods}
        for agent in hollow.agents.values():
            for info in await agent.runtime.list():
                if info.labels.get(POD_UID_LABEL) in uids:
                    agent.runtime.exit_container(info.id, 0)

        async def complete():
            j = await client.get("Job", "count", "default")
            return j if any(c.type == "Complete" and c.status == "True" for c in j.status.conditions) else None
        j = await until(complete, "the job completes", timeout=90)
        assert (j.status.succeeded, j.status.completed_indexes, j.status.failed) == (3, "0-2", 0)
    finally:
        await hollow.stop()
        await cp.stop()
        await asyncio.sleep(0)
