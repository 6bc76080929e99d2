"""Jobs, CronJobs, DaemonSets and PodDisruptionBudgets on the real apiserver
(etcd + apiserver subprocesses) with the real scheduler and controller
manager in-process and simulated nodes (tests/integration/test_controllers_sim.py).

Job pods run to completion on `JobNodes`: a pod whose image contains
"succeed" exits 0 at once, "fail" exits 1; any other image runs until the
test names it in `finish`.
"""
import asyncio
import contextlib
import time

from machinery import codec, errors, kinds, workloads

from tests.integration.test_controllers_sim import ControlPlane, SimNodes, kctl, until


class JobNodes(SimNodes):
    def __init__(self, client):
        super().__init__(client)
        self.finish: dict[str, int] = {}          # image -> exit code, for images that run until told
        self.started: dict[str, list[str]] = {}   # completion index -> pod names that ran it

    def exit_code(self, pod):
        image = pod.spec.containers[0].image
        if "succeed" in image:
            return 0
        if "fail" in image:
            return 1
        return self.finish.get(image)

    async def _handle(self, pod):
        code = self.exit_code(pod)
        terminal = pod.status.phase in ("Succeeded", "Failed")
        if pod.metadata.HasField("deletion_timestamp") or (code is None and not terminal):
            await super()._handle(pod)
            return
        if terminal:
            return
        idx = pod.metadata.annotations.get(workloads.COMPLETION_INDEX)
        if idx is not None and pod.metadata.name not in self.started.get(idx, []):
            self.started.setdefault(idx, []).append(pod.metadata.name)
        new = codec.copy(pod)
        new.status.phase = "Succeeded" if code == 0 else "Failed"
        del new.status.container_statuses[:]
        cs = new.status.container_statuses.add(name=pod.spec.containers[0].name, image=pod.spec.containers[0].image)
        cs.state.terminated.exit_code = code
        cs.state.terminated.finished_at.GetCurrentTime()
        try:
            await self.client.update_status(new)
        except errors.ApiError:
            pass

    def release(self, image, code=0):
        self.finish[image] = code
        for p in self.pods.list():
            self._on_pod(p)


@contextlib.asynccontextmanager
async def workload_cluster(client, nodes=("n1", "n2"), *args):
    sim = JobNodes(client)
    await sim.add(*nodes)
    await sim.start()
    cp = ControlPlane(client, "--job-backoff", "200ms", *args)
    await cp.start()
    try:
        yield sim, cp
    finally:
        await cp.stop()
        await sim.stop()


def job(name, image, completions=1, parallelism=1, backoff=6, indexed=False):
    j = kinds.new("Job")
    j.metadata.name, j.metadata.namespace = name, "default"
    j.spec.completions, j.spec.parallelism, j.spec.backoff_limit = completions, parallelism, backoff
    if indexed:
        j.spec.completion_mode = "Indexed"
    j.spec.template.spec.restart_policy = "Never"
    j.spec.template.spec.containers.add(name="main", image=image)
    return j


def condition(obj, type_):
    return next(((c.status, c.reason) for c in obj.status.conditions if c.type == type_), None)


async def test_indexed_job_completes_each_index_once(client, apiserver):
    async with workload_cluster(client) as (sim, cp):
        created = await client.create(job("idx", "worker-succeed", completions=5, parallelism=2, indexed=True))
        sel = created.spec.selector.match_labels
        assert sel[workloads.CONTROLLER_UID] == created.metadata.uid           # the apiserver generated it

        async def complete():
            j = await client.get("Job", "idx", "default")
            return j if condition(j, "Complete") == ("True", "CompletionsReached") else None
        j = await until(complete, "Complete")
        assert (j.status.succeeded, j.status.completed_indexes, j.status.failed) == (5, "0-4", 0)
        assert condition(j, "SuccessCriteriaMet") == ("True", "CompletionsReached")
        assert sorted(sim.started) == ["0", "1", "2", "3", "4"]
        assert all(len(names) == 1 for names in sim.started.values())
        pods, _ = await client.list("Pod", "default")
        assert all(workloads.JOB_TRACKING_FINALIZER not in p.metadata.finalizers for p in pods)
        code, out = await kctl(apiserver.target, "get", "jobs")
        assert code == 0 and out.split("\n")[1].split()[:3] == ["idx", "Complete", "5/5"], out


async def test_failing_job_stops_at_its_backoff_limit(client):
    async with workload_cluster(client) as (sim, cp):
        await client.create(job("bad", "task-fail", backoff=2))

        async def failed():
            j = await client.get("Job", "bad", "default")
            return j if condition(j, "Failed") is not None else None
        j = await until(failed, "Failed")
        assert condition(j, "Failed") == ("True", "BackoffLimitExceeded")
        assert condition(j, "FailureTarget") == ("True", "BackoffLimitExceeded")
        assert j.status.failed == 3 and j.status.active == 0


async def test_cronjob_fires_and_forbid_skips_while_a_job_runs(client):
    async with workload_cluster(client, ("n1",)) as (sim, cp):
        ctrl = cp.controllers["cronjob"]
        base = time.time()
        offset = [0.0]
        ctrl.clock = lambda: base + offset[0]
        cj = kinds.new("CronJob")
        cj.metadata.name, cj.metadata.namespace = "every", "default"
        cj.spec.schedule, cj.spec.concurrency_policy = "*/1 * * * *", "Forbid"
        t = cj.spec.job_template.spec.template
        t.spec.restart_policy = "Never"
        t.spec.containers.add(name="main", image="long-task")
        await client.create(cj)

        async def jobs():
            items, _ = await client.list("Job", "default")
            return items

        async def tick(seconds):
            offset[0] += seconds
            ctrl.enqueue_key("default/every")

        await tick(61)
        first = (await until(jobs, "the first Job"))[0]
        assert first.metadata.name.startswith("every-")
        assert first.metadata.annotations[workloads.CRONJOB_SCHEDULED_TIMESTAMP]
        # Forbid reads status.active from the controller's cache (Kubernetes has the same window):
        # tick only once the cache shows the first run as active
        await until(lambda: (c := ctrl.cj_inf.get("default", "every")) is not None and len(c.status.active) == 1,
                    "the first run listed as active in the controller's cache")
        await tick(60)                                     # the next minute: the first still runs
        await until(lambda: _has_event(client, "JobAlreadyActive"), "JobAlreadyActive")
        assert len(await jobs()) == 1
        sim.release("long-task")
        # the skipped minute is not lost: without startingDeadlineSeconds it starts (late) as soon as
        # the running Job has finished, as in Kubernetes
        async def two():
            items = await jobs()
            return items if len(items) == 2 else None
        names = sorted(j.metadata.name for j in await until(two, "the skipped run, once the first finished"))
        first_minute = int(first.metadata.name.rsplit("-", 1)[1])
        assert names == [f"every-{first_minute}", f"every-{first_minute + 1}"]

        async def finished():
            c = await client.get("CronJob", "every", "default")
            return not c.status.active and c.status.last_successful_time.seconds > 0
        await until(finished, "both runs seen completed")


async def _has_event(client, reason):
    evs, _ = await client.list("Event", "default")
    return any(e.reason == reason for e in evs)


def daemonset(image):
    d = kinds.new("DaemonSet")
    d.metadata.name, d.metadata.namespace = "agent", "default"
    d.spec.selector.match_labels["app"] = "agent"
    d.spec.template.metadata.labels["app"] = "agent"
    d.spec.template.spec.containers.add(name="main", image=image)
    return d


async def test_daemonset_one_pod_per_node_new_node_and_rolling_update(client, apiserver):
    async with workload_cluster(client, ("n1", "n2")) as (sim, cp):
        await client.create(daemonset("agent:v1"))

        async def placed(n, image):
            pods, _ = await client.list("Pod", "default")
            live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
            ok = len(live) == n and len({p.spec.node_name for p in live}) == n and all(
                p.status.phase == "Running" and p.spec.containers[0].image == image for p in live)
            ds = await client.get("DaemonSet", "agent", "default")
            st = ds.status
            return ok and st.number_available == st.desired_number_scheduled == st.updated_number_scheduled == n \
                and st.observed_generation == ds.metadata.generation
        await until(lambda: placed(2, "agent:v1"), "a pod on n1 and n2")
        await sim.add("n3")
        await until(lambda: placed(3, "agent:v1"), "n3 got its pod")
        ds = await client.get("DaemonSet", "agent", "default")
        ds.spec.template.spec.containers[0].image = "agent:v2"
        await client.update(ds)
        code, out = await kctl(apiserver.target, "rollout", "status", "ds/agent", "--timeout", "60s")
        assert code == 0 and out.strip().endswith('daemon set "agent" successfully rolled out'), out
        await until(lambda: placed(3, "agent:v2"), "rolled out")
        code, out = await kctl(apiserver.target, "rollout", "history", "daemonset/agent")
        assert out.split("\n")[1:4] == ["REVISION  CHANGE-CAUSE", "1         <none>", "2         <none>"], out
        code, out = await kctl(apiserver.target, "get", "controllerrevisions")
        assert code == 0 and out.count("daemonset.apps/agent") == 2, out


async def test_drain_keeps_a_pdb_min_available(client, apiserver):
    """Two of three pods on one node, minAvailable 2: the second eviction waits (429, retried) until
    the first pod's replacement is Ready elsewhere; Ready pods never drop below 2."""
    async with workload_cluster(client, ("n1", "n2")) as (sim, cp):
        rs = kinds.new("ReplicaSet")
        rs.metadata.name, rs.metadata.namespace = "web", "default"
        rs.spec.replicas = 3
        rs.spec.selector.match_labels["app"] = "web"
        rs.spec.template.metadata.labels["app"] = "web"
        rs.spec.template.spec.containers.add(name="main", image="web:v1")
        await client.create(rs)
        pdb = kinds.new("PodDisruptionBudget")
        pdb.metadata.name, pdb.metadata.namespace = "web", "default"
        pdb.spec.min_available.int_val = 2
        pdb.spec.selector.match_labels["app"] = "web"
        await client.create(pdb)

        async def healthy():
            p = await client.get("PodDisruptionBudget", "web", "default")
            return p.status.current_healthy == 3 and p.status.disruptions_allowed == 1
        await until(healthy, "the PDB allows one disruption")
        low = [3]

        async def watch_ready():
            while True:
                pods, _ = await client.list("Pod", "default")
                ready = sum(1 for p in pods if not p.metadata.HasField("deletion_timestamp")
                            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions))
                low[0] = min(low[0], ready)
                await asyncio.sleep(0.05)
        watcher = asyncio.create_task(watch_ready())
        try:
            pods, _ = await client.list("Pod", "default")
            on = [p.spec.node_name for p in pods]
            node = max(set(on), key=on.count)                  # the node with two of the three pods
            assert on.count(node) == 2
            code, out = await kctl(apiserver.target, "drain", node, "--grace-period", "0", "--timeout", "90")
            assert code == 0, out
            assert f"node/{node} drained" in out
            assert "Cannot evict pod as it would violate the pod's disruption budget." in out
        finally:
            watcher.cancel()
        assert low[0] >= 2


async def test_examples_apply_and_get_all_lists_the_workloads(client, apiserver):
    """The examples/ manifests apply as they are; `get all` and the per-kind tables show them."""
    for name in ("job-indexed", "cronjob", "daemonset", "pdb", "statefulset"):
        code, out = await kctl(apiserver.target, "apply", "-f", f"examples/{name}.yaml")
        assert code == 0, out
    code, out = await kctl(apiserver.target, "get", "all")
    assert code == 0, out
    for ref in ("daemonset.apps/node-echo", "cronjob.batch/hello", "job.batch/squares", "deployment.apps/web",
                "statefulset.apps/kv", "service/kv"):
        assert ref in out, out
    code, out = await kctl(apiserver.target, "get", "cj,pdb")
    heads = [ln.split() for ln in out.splitlines() if ln.startswith("NAME")]
    assert heads == [["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
                     ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]], out
    code, out = await kctl(apiserver.target, "apply", "-f", "examples/job-indexed.yaml")
    assert code == 0 and "job.batch/squares unchanged" in out, out
    job = await client.get("Job", "squares", "default")
    assert job.spec.selector.match_labels[workloads.CONTROLLER_UID] == job.metadata.uid
    assert job.metadata.labels[workloads.JOB_NAME] == "squares"           # as `kubectl describe job` shows
