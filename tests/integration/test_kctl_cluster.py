"""kctl against a working control plane: etcd, apiserver, controller
manager, scheduler and two hollow node agents (`--runtime fake`), all real
processes. Covers what needs controllers: `rollout status` waiting for a
real rollout, history/undo of real revisions, scale, `drain` evicting pods
that are then replaced elsewhere, and `describe pod` showing the
scheduler's events and decision."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.pki import session
from tests.cluster import REPO, Cluster, free_port
from tests.integration.kctl_helpers import kctl

pytestmark = pytest.mark.timeout(180)


class Component:
    """A `python -m <module>` child in its own session, stopped by PID."""

    def __init__(self, workdir, name, args):
        self.log = open(workdir / f"{name}.log", "ab")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", *args], stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=REPO, env=env, start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def wait_until(pred, timeout=60, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("kctl-cp")
    cluster = Cluster(work)
    cluster.start()
    target = cluster.apiserver.target
    comps = []
    try:
        comps.append(Component(work, "controller-manager", ["controllers.main", "--apiserver", target]))
        comps.append(Component(work, "scheduler", ["scheduler.main", "--apiserver", target]))
        for i in (1, 2):
            comps.append(Component(work, f"node{i}", [
                "nodeagent.main", "--kubeconfig", str(session().node_kubeconfig(f"node{i}", "127.0.0.1")),
                "--apiserver", target, "--node-name", f"node{i}", "--node-ip", "127.0.0.1",
                "--root-dir", str(work / f"node{i}"), "--runtime", "fake", "--pod-cidr", f"10.210.{i}.0/24",
                "--agent-port", str(free_port()), "--capacity", "cpu=4,memory=8Gi,pods=110"]))
        wait_until(lambda: kctl(target, "get", "nodes").out.count(" Ready ") == 2, 60, "2 Ready nodes")
        yield target
    finally:
        for c in comps:
            c.stop()
        cluster.stop()


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "busybox:1"}]}
"""


def test_rollout_status_history_undo_and_scale(server):
    assert kctl(server, "apply", "-f", "-", input=DEPLOY).out == "deployment.apps/web created\n"
    r = kctl(server, "rollout", "status", "deploy/web", "--timeout", "60")
    assert r.code == 0, r
    assert r.out.splitlines()[-1] == 'deployment "web" successfully rolled out'
    assert kctl(server, "get", "deploy", "web").out.splitlines()[1].split()[1:4] == ["3/3", "3", "3"]
    pods = kctl(server, "get", "pods", "-l", "app=web").out.splitlines()[1:]
    assert len(pods) == 3 and all(p.split()[1:3] == ["1/1", "Running"] for p in pods)

    assert kctl(server, "set", "image", "deploy/web", "c=busybox:2").code == 0
    r = kctl(server, "rollout", "status", "deploy/web", "--timeout", "60")
    assert r.code == 0 and r.out.splitlines()[-1] == 'deployment "web" successfully rolled out', r
    hist = kctl(server, "rollout", "history", "deploy/web").out.splitlines()
    assert hist[1:] == ["REVISION  CHANGE-CAUSE", "1         <none>", "2         <none>"]
    assert "busybox:1" in kctl(server, "rollout", "history", "deploy/web", "--revision", "1").out

    assert kctl(server, "rollout", "undo", "deploy/web").out == "deployment.apps/web rolled back\n"
    assert kctl(server, "rollout", "status", "deploy/web", "--timeout", "60").code == 0
    assert "busybox:1" in kctl(server, "get", "deploy", "web", "-o", "wide").out
    assert kctl(server, "get", "rs", "-l", "app=web", "--no-headers").out.count("\n") == 2

    assert kctl(server, "scale", "deploy/web", "--replicas", "1").code == 0
    assert kctl(server, "rollout", "status", "deploy/web", "--timeout", "60").code == 0
    wait_until(lambda: len(kctl(server, "get", "pods", "-l", "app=web", "--no-headers").out.splitlines()) == 1,
               30, "scaled down to 1 pod")
    wait_until(lambda: "1 desired | 1 updated | 1 total | 1 available | 0 unavailable"
               in kctl(server, "describe", "deploy", "web").out, 30, "describe to show the scaled deployment")
    desc = kctl(server, "describe", "deploy", "web").out
    assert "NewReplicaSet:" in desc and "Normal  ScalingReplicaSet" in desc
    assert "Progressing    True    NewReplicaSetAvailable" in desc


def test_describe_pod_shows_scheduler_events_and_decision(server):
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\nspec: {containers: [{name: c, image: busybox}]}\n"
    assert kctl(server, "apply", "-f", "-", input=pod).code == 0
    r = kctl(server, "wait", "--for=condition=Ready", "pod/solo", "--timeout", "30s")
    assert r.out == "pod/solo condition met\n", r
    out = kctl(server, "describe", "pod", "solo").out
    assert "Scheduled" in out and "Scheduling Decision:" in out, out
    assert "2 considered, 2 feasible" in out
    wide = kctl(server, "get", "pod", "solo", "-o", "wide").out.splitlines()[1].split()
    assert wide[6] in ("node1", "node2") and wide[5].startswith("10.210.")


def test_drain_evicts_and_pods_come_back_elsewhere(server):
    assert kctl(server, "apply", "-f", "-", input=DEPLOY.replace("name: web}", "name: spread}")
                .replace("app: web", "app: spread")).code == 0
    assert kctl(server, "rollout", "status", "deploy/spread", "--timeout", "60").code == 0
    r = kctl(server, "drain", "node1", "--force", "--timeout", "60")
    assert r.code == 0, r
    assert r.out.startswith("node/node1 cordoned\n") and r.out.endswith("node/node1 drained\n")
    assert "SchedulingDisabled" in kctl(server, "get", "node", "node1").out

    def all_on_node2():
        rows = [ln.split() for ln in kctl(server, "get", "pods", "-l", "app=spread", "-o", "wide",
                                          "--no-headers").out.splitlines()]
        return len(rows) == 3 and all(r[2] == "Running" and r[6] == "node2" for r in rows)
    wait_until(all_on_node2, 60, "replacement pods on node2")
    assert kctl(server, "uncordon", "node1").out == "node/node1 uncordoned\n"


def test_rollout_status_reports_progress_deadline(server):
    bad = DEPLOY.replace("name: web}", "name: stuck}").replace("app: web", "app: stuck") \
        .replace("  replicas: 3\n", "  replicas: 1\n  progressDeadlineSeconds: 2\n") \
        .replace("spec: {containers:", "spec: {nodeSelector: {disk: none-has-it}, containers:")
    assert kctl(server, "apply", "-f", "-", input=bad).code == 0
    r = kctl(server, "rollout", "status", "deploy/stuck", "--timeout", "60")
    assert r.code == 1 and r.err == 'error: deployment "stuck" exceeded its progress deadline\n', r


def test_logs_and_exec_errors_through_hollow_agents(server):
    """Hollow agents advertise an endpoint but serve no logs/exec service:
    the apiserver's node proxy says so and kctl prints it in one line."""
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: duo}\nspec: {containers: [{name: a, image: busybox}]}\n"
    assert kctl(server, "apply", "-f", "-", input=pod).code == 0
    assert kctl(server, "wait", "--for=condition=Ready", "pod/duo", "--timeout", "30s").code == 0
    r = kctl(server, "exec", "duo", "--", "true")
    assert r.code == 1 and r.err.startswith("Error from server (ServiceUnavailable): ") and \
        ': agent at 127.0.0.1:' in r.err and r.err.count("\n") == 1, r
    r = kctl(server, "logs", "ghost")
    assert r.code == 1 and r.err == 'Error from server (NotFound): pods "ghost" not found\n', r
    pending = "apiVersion: v1\nkind: Pod\nmetadata: {name: nowhere}\n" \
              "spec: {nodeSelector: {x: y}, containers: [{name: a, image: busybox}]}\n"
    assert kctl(server, "apply", "-f", "-", input=pending).code == 0
    r = kctl(server, "logs", "nowhere")
    assert r.code == 1 and "does not have a host assigned" in r.err, r


def test_delete_cascade_background_and_orphan(server):
    for name in ("gc-bg", "gc-orphan"):
        assert kctl(server, "create", "deployment", name, "--image=busybox", "--replicas", "1").code == 0
        assert kctl(server, "rollout", "status", f"deploy/{name}", "--timeout", "60").code == 0
    assert kctl(server, "delete", "deploy", "gc-orphan", "--cascade=orphan").out == \
        'deployment.apps "gc-orphan" deleted\n'
    assert kctl(server, "delete", "deploy", "gc-bg", "--timeout", "60").out == 'deployment.apps "gc-bg" deleted\n'
    wait_until(lambda: kctl(server, "get", "rs,pods", "-l", "app=gc-bg", "-o", "name").out == "", 30,
               "background cascade to remove the replica set and its pods")
    time.sleep(1)
    assert kctl(server, "get", "rs", "-l", "app=gc-orphan", "-o", "name").out.startswith("replicaset.apps/gc-orphan-")
    r = kctl(server, "delete", "deploy", "gc-bg")
    assert r.code == 1 and r.err == 'Error from server (NotFound): deployments.apps "gc-bg" not found\n'
