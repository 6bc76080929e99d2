"""Workloads beyond Deployments, end to end on a real 3-node lab (issue 12's Acceptance).

One lab for the module; the tests run in file order on it:

* init containers and a native sidecar: `first` and `second` (plain init
  containers) run one after the other, then the sidecar `proxy` (kctl/echo
  on :9000, restartPolicy Always, gated by its startupProbe), then the app,
  whose first request to the sidecar is answered; the sidecar serves from
  outside the pod while the app runs; on delete the app stops first and the
  sidecar last. Each step appends a line to a hostPath file the test reads
  (lab nodes share the machine's filesystem);
* an Indexed Job of 5 completions, parallelism 2: each index succeeds once,
  its pod saw JOB_COMPLETION_INDEX and hostname NAME-INDEX, and no more than
  2 of its pods ever run at once (a watch from before the Job exists);
* a Job whose pod always exits 3 with backoffLimit 1: two failed pods, then
  the Failed condition with reason BackoffLimitExceeded, and no third pod;
* a DaemonSet created while node3 is powered off (`kctl lab kill-node`) has
  pods on node1 and node2 only; node3 booted again (`kctl lab start-node`)
  gets its pod; a rolling update replaces all three (`kctl rollout status`);
* `kctl drain node1` with all 3 replicas of a Deployment on node1 and a
  PodDisruptionBudget `minAvailable: 2`: evictions are refused (429) and
  retried, and a watch from before the drain never sees fewer than 2 Ready
  replicas; the drain ends with the 3 replicas Ready elsewhere;
* a CronJob `* * * * *` with concurrencyPolicy Forbid, created when the
  module starts and whose Job never ends: at the next schedule time the
  controller skips the run (event JobAlreadyActive) and one Job stays.

Busybox commands that could hang run under `timeout` (design §4).
"""
from __future__ import annotations

import asyncio
import os
import re

import pytest

from tests.e2e.lab_fixtures import lab, missing_tools, node_ready, nodes, pods, ready, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "wl"
ECHO = "kctl/echo:latest"
UNREACHABLE = "node.kubernetes.io/unreachable"


class PodWatch:
    """Every state of the pods matching `selector` that a watch sees, from
    before they exist: `states` is one {name: pod} after each event."""

    def __init__(self, lab, selector: str, namespace: str = "default"):
        self.states: list[dict] = []
        self.selector, self.namespace = selector, namespace
        self.task = asyncio.run_coroutine_threadsafe(self._run(lab.api.client), lab.api.loop)
        wait_for(f"the watch on {selector}", lambda: self.states, 10)

    async def _run(self, client):
        items, rv = await client.list("Pod", self.namespace, label_selector=self.selector)
        now = {p.metadata.name: p for p in items}
        self.states.append(dict(now))
        while True:  # a watch the server ends is resumed from the last resourceVersion
            async for ev in client.watch("Pod", self.namespace, resource_version=rv, label_selector=self.selector):
                rv = ev.resource_version or rv
                if ev.object is not None and ev.type in ("ADDED", "MODIFIED", "DELETED"):
                    if ev.type == "DELETED":
                        now.pop(ev.object.metadata.name, None)
                    else:
                        now[ev.object.metadata.name] = ev.object
                    self.states.append(dict(now))

    def stop(self) -> None:
        self.task.cancel()


def api_get(lab, kind: str, name: str, namespace: str = "default"):
    return lab.api(lambda c: c.get(kind, name, namespace))


def condition(obj, type_: str):
    return next((c for c in obj.status.conditions if c.type == type_), None)


def events_of(lab, name: str, namespace: str = "default") -> list:
    items, _ = lab.api(lambda c: c.list("Event", namespace, field_selector=f"involvedObject.name={name}"))
    return items


# --------------------------------------------------------------- CronJob (starts first, checked last)

CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: tick}}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers: [{name: tick, image: busybox, command: [sleep, "3600"]}]
"""


@pytest.fixture(scope="module", autouse=True)
def cronjob(lab):
    """Created before the other tests run so that its minute boundaries pass meanwhile."""
    lab.kctl("apply", "-f", "-", input=CRONJOB)
    yield
    lab.kctl("delete", "cronjob", "tick", "--wait=false", check=False)


# --------------------------------------------------------------- init containers and a sidecar

def initdemo(hostdir: str) -> str:
    mount = "volumeMounts: [{name: log, mountPath: /log}]"
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: initdemo, labels: {{app: initdemo}}}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: log, hostPath: {{path: {hostdir}, type: DirectoryOrCreate}}}}]
  initContainers:
  - name: first
    image: busybox
    command: [sh, -c, 'echo first >> /log/order']
    {mount}
  - name: second
    image: busybox
    command: [sh, -c, 'grep -qx first /log/order && echo second >> /log/order']
    {mount}
  - name: proxy
    image: {ECHO}
    restartPolicy: Always
    env: [{{name: PORT, value: "9000"}}]
    command: [sh, -c, 'echo "proxy start" >> /log/order; /usr/local/bin/echo-server & p=$!;
              trap "echo proxy stop >> /log/order; kill $p; exit 0" TERM; wait $p']
    startupProbe: {{tcpSocket: {{port: 9000}}, periodSeconds: 1}}
    {mount}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo "app start $(timeout 5 wget -q -O- http://127.0.0.1:9000/)" >> /log/order;
              trap "echo app stop >> /log/order; exit 0" TERM; sleep 3600 & wait $!']
    {mount}
"""


def test_init_containers_then_the_sidecar_then_the_app_and_the_sidecar_stops_last(lab, tmp_path_factory):
    hostdir = str(tmp_path_factory.mktemp("initdemo"))
    order = os.path.join(hostdir, "order")
    # The order is read from a hostPath, which Pod Security's baseline level (the
    # default) refuses: `default` is privileged for this test only.
    lab.kctl("label", "namespace", "default", "pod-security.kubernetes.io/enforce=privileged", "--overwrite")
    try:
        lab.kctl("apply", "-f", "-", input=initdemo(hostdir))
    finally:
        lab.kctl("label", "namespace", "default", "pod-security.kubernetes.io/enforce-")
    pod = wait_for("initdemo Running and Ready", lambda: next(
        (p for p in pods(lab, "app=initdemo") if ready(p)), None), 90, interval=0.5)
    wait_for("the app's line", lambda: os.path.exists(order) and "app start" in open(order).read(), 15)
    with open(order) as f:
        assert f.read().splitlines() == ["first", "second", "proxy start", "app start initdemo"]
    out = lab.kctl("get", "pod", "initdemo").stdout
    assert re.search(r"^initdemo\s+2/2\s+Running\s+0\s", out, re.M), out     # the sidecar counts in READY
    init = {s.name: s for s in pod.status.init_container_statuses}
    assert init["first"].state.terminated.reason == init["second"].state.terminated.reason == "Completed"
    assert init["proxy"].state.HasField("running") and init["proxy"].started
    desc = lab.kctl("describe", "pod", "initdemo").stdout
    section = desc.split("Init Containers:\n", 1)[1].split("\nContainers:\n", 1)[0]
    assert re.findall(r"^  (\w+):$", section, re.M) == ["first", "second", "proxy"], desc
    # the sidecar serves from outside the pod while the app runs
    res = lab.lab("exec", pod.spec.node_name, "--", "timeout", "5", "busybox", "wget", "-q", "-O-",
                  f"http://{pod.status.pod_ip}:9000/", check=False)
    assert res.stdout.strip() == "initdemo", res

    lab.kctl("delete", "pod", "initdemo", timeout=90)
    with open(order) as f:
        assert f.read().splitlines() == ["first", "second", "proxy start", "app start initdemo",
                                         "app stop", "proxy stop"]


# --------------------------------------------------------------- Jobs

JOBS = """
apiVersion: batch/v1
kind: Job
metadata: {name: squares}
spec:
  completions: 5
  parallelism: 2
  completionMode: Indexed
  template:
    metadata: {labels: {app: squares}}
    spec:
      restartPolicy: Never
      containers:
      - name: square
        image: busybox
        command: [sh, -c, 'echo "index $JOB_COMPLETION_INDEX host $(hostname)
                           square $((JOB_COMPLETION_INDEX * JOB_COMPLETION_INDEX))"; sleep 1']
---
apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 1
  template:
    metadata: {labels: {app: fails}}
    spec:
      restartPolicy: Never
      containers: [{name: fail, image: busybox, command: [sh, -c, 'exit 3']}]
"""
INDEX = "batch.kubernetes.io/job-completion-index"


@pytest.fixture(scope="module")
def jobs(lab):
    watch = PodWatch(lab, "app=squares")
    lab.kctl("apply", "-f", "-", input=JOBS)
    yield watch
    watch.stop()
    lab.kctl("delete", "job", "squares", "fails", check=False, timeout=90)


def test_indexed_job_completes_each_index_once_with_parallelism_2(lab, jobs):
    lab.kctl("wait", "--for=condition=complete", "job/squares", "--timeout", "120s", timeout=150)
    job = api_get(lab, "Job", "squares")
    assert (job.status.succeeded, job.status.failed, job.status.completed_indexes) == (5, 0, "0-4")
    done = [p for p in pods(lab, "app=squares") if p.status.phase == "Succeeded"]
    assert sorted(int(p.metadata.annotations[INDEX]) for p in done) == [0, 1, 2, 3, 4]
    for p in done:
        i = int(p.metadata.annotations[INDEX])
        log = lab.kctl("logs", p.metadata.name).stdout.split()
        assert log == ["index", str(i), "host", f"squares-{i}", "square", str(i * i)], (p.metadata.name, log)
    running = [sum(1 for p in s.values() if p.status.phase in ("Pending", "Running")
                   and not p.metadata.HasField("deletion_timestamp")) for s in jobs.states]
    print(f"\nsquares: {len(jobs.states)} watch states, at most {max(running)} pods at once")
    assert 0 < max(running) <= 2


def test_failing_job_stops_at_its_backoff_limit(lab, jobs):
    def failed():
        c = condition(api_get(lab, "Job", "fails"), "Failed")
        return c if c is not None and c.status == "True" else None
    cond = wait_for("job/fails Failed", failed, 120, interval=1)
    assert cond.reason == "BackoffLimitExceeded" and cond.message == "Job has reached the specified backoff limit"
    job = api_get(lab, "Job", "fails")
    assert (job.status.failed, job.status.succeeded, job.status.active) == (2, 0, 0)
    ps = pods(lab, "app=fails")
    assert len(ps) == 2 and all(p.status.phase == "Failed" for p in ps), [(p.metadata.name, p.status.phase) for p in ps]
    assert [cs.state.terminated.exit_code for p in ps for cs in p.status.container_statuses] == [3, 3]
    assert "BackoffLimitExceeded" in {e.reason for e in events_of(lab, "fails")}


# --------------------------------------------------------------- DaemonSet

def daemonset(version: str) -> str:
    return f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: perhost}}
spec:
  selector: {{matchLabels: {{app: perhost}}}}
  updateStrategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 1}}}}
  template:
    metadata: {{labels: {{app: perhost}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        env: [{{name: VERSION, value: "{version}"}}]
        command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait $!']
"""


def ds_pods_by_node(lab, version: str | None = None) -> dict[str, str]:
    """{node: pod name} of the Ready daemon pods (of `version` when given)."""
    out = {}
    for p in pods(lab, "app=perhost"):
        if ready(p) and (version is None or p.spec.containers[0].env[0].value == version):
            out.setdefault(p.spec.node_name, []).append(p.metadata.name)
    return out


def test_daemonset_one_pod_per_node_and_a_node_booted_later_gets_its_own(lab):
    lab.lab("kill-node", "node3")
    wait_for("node3 tainted unreachable", lambda: any(
        t.key == UNREACHABLE and t.effect == "NoSchedule" for t in api_get(lab, "Node", "node3", "").spec.taints), 30)
    try:
        lab.kctl("apply", "-f", "-", input=daemonset("1"))
        wait_for("daemon pods Ready on node1 and node2", lambda: sorted(ds_pods_by_node(lab)) == ["node1", "node2"],
                 60, interval=0.5)
        ds = api_get(lab, "DaemonSet", "perhost")
        assert (ds.status.desired_number_scheduled, ds.status.current_number_scheduled) == (2, 2)
        assert "node3" not in {p.spec.node_name for p in pods(lab, "app=perhost")}
    finally:
        lab.lab("start-node", "node3")
    wait_for("node3 Ready", lambda: nodes(lab)["node3"] == "True", 60, interval=0.5)
    by_node = wait_for("a daemon pod Ready on node3 too",
                       lambda: (lambda b: b if sorted(b) == ["node1", "node2", "node3"] else None)(
                           ds_pods_by_node(lab)), 60, interval=0.5)
    assert all(len(names) == 1 for names in by_node.values()), by_node
    out = lab.kctl("get", "ds", "perhost").stdout
    assert re.search(r"^perhost\s+3\s+3\s+3\s+3\s+3\s", out, re.M), out

    lab.kctl("apply", "-f", "-", input=daemonset("2"))
    lab.kctl("rollout", "status", "ds/perhost", "--timeout", "120s", timeout=150)
    by_node = wait_for("three version-2 daemon pods", lambda: (lambda b: b if sorted(b) == ["node1", "node2", "node3"]
                                                                 else None)(ds_pods_by_node(lab, "2")), 30)
    assert all(len(names) == 1 for names in by_node.values()), by_node
    ds = api_get(lab, "DaemonSet", "perhost")
    assert (ds.status.updated_number_scheduled, ds.status.number_ready) == (3, 3)
    lab.kctl("delete", "ds", "perhost", timeout=90)


# --------------------------------------------------------------- drain with a PodDisruptionBudget

GUARDED = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded}
spec:
  replicas: 3
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: echo
        image: kctl/echo:latest
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: guarded}}
"""


def guarded_ready(lab) -> list:
    return [p for p in pods(lab, "app=guarded") if ready(p)]


def test_drain_never_leaves_fewer_ready_replicas_than_the_budget(lab):
    lab.kctl("cordon", "node2", "node3")          # all three replicas land on node1
    try:
        lab.kctl("apply", "-f", "-", input=GUARDED)
        wait_for("3 Ready replicas on node1", lambda: len([p for p in guarded_ready(lab)
                                                           if p.spec.node_name == "node1"]) == 3, 90, interval=0.5)
    finally:
        lab.kctl("uncordon", "node2", "node3")

    def budget():
        pdb = api_get(lab, "PodDisruptionBudget", "guarded")
        s = pdb.status
        return pdb if (s.current_healthy, s.desired_healthy, s.disruptions_allowed) == (3, 2, 1) else None
    wait_for("the PDB allowing 1 disruption", budget, 30)

    watch = PodWatch(lab, "app=guarded")
    try:
        res = lab.kctl("drain", "node1", "--ignore-daemonsets", "--timeout", "150", timeout=180)
    finally:
        watch.stop()
    out = res.stdout + res.stderr
    print(f"\n$ kctl drain node1\n{out}")
    assert "Cannot evict pod as it would violate the pod's disruption budget" in out, out
    assert len(re.findall(r"^pod/guarded-\S+ evicted$", res.stdout, re.M)) == 3, out
    counts = [sum(1 for p in s.values() if ready(p)) for s in watch.states]
    print(f"Ready replicas over {len(counts)} watch states: min {min(counts)}, max {max(counts)}")
    assert min(counts) >= 2, counts
    final = wait_for("3 Ready replicas off node1", lambda: (lambda r: r if len(r) == 3 else None)(
        guarded_ready(lab)), 60, interval=0.5)
    assert all(p.spec.node_name in ("node2", "node3") for p in final)
    assert api_get(lab, "Node", "node1", "").spec.unschedulable
    lab.kctl("uncordon", "node1")
    lab.kctl("delete", "deployment", "guarded", timeout=90)
    lab.kctl("delete", "pdb", "guarded")


# --------------------------------------------------------------- CronJob Forbid

def test_cronjob_forbid_skips_a_run_while_its_job_is_active(lab):
    """The Job of the first schedule time sleeps for an hour; at the next
    minute the controller must not start a second one."""
    def skipped():
        return [e for e in events_of(lab, "tick") if e.reason == "JobAlreadyActive"]
    evs = wait_for("a run skipped (event JobAlreadyActive)", skipped, 150, interval=2)
    assert evs[0].message == "Not starting job because prior execution is running and concurrency policy is Forbid"
    items, _ = lab.api(lambda c: c.list("Job", "default"))
    mine = [j for j in items if any(o.kind == "CronJob" and o.name == "tick" for o in j.metadata.owner_references)]
    assert len(mine) == 1, [j.metadata.name for j in mine]
    assert condition(mine[0], "Complete") is None and condition(mine[0], "Failed") is None
    cj = api_get(lab, "CronJob", "tick")
    assert [a.name for a in cj.status.active] == [mine[0].metadata.name]
    created = [e for e in events_of(lab, "tick") if e.reason == "SuccessfulCreate"]
    assert len(created) == 1, [e.message for e in created]
    out = lab.kctl("get", "cronjob", "tick").stdout
    assert re.search(r"^tick\s+\* \* \* \* \*\s+\S+\s+False\s+1\s", out, re.M), out
