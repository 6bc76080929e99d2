"""kctl verbs for the workload kinds on the FakeClient: drain honouring a
PodDisruptionBudget (kubectl's retry on 429), rollout status|history|undo of
a DaemonSet, create job --from=cronjob/NAME."""
from __future__ import annotations

import asyncio

import pytest

from controllers import podutil
from kubectlish import nodes
from machinery import codec, workloads
from tests.unit.test_kctl_commands import fake, kctl, make, pod  # noqa: F401  (fixture)


def pdb(allowed: int) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 2 + allowed,
                       "desiredHealthy": 2, "expectedPods": 2 + allowed}}


def ready_pod(name: str) -> dict:
    m = pod(name, owner="ReplicaSet")
    m["metadata"]["labels"] = {"app": "web"}
    m["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return m


@pytest.fixture
def covered(fake, monkeypatch):  # noqa: F811
    monkeypatch.setattr(nodes, "EVICTION_RETRY", 0.1)
    make(fake, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    make(fake, ready_pod("web-1"))
    return fake


def test_drain_retries_an_eviction_the_budget_refuses(covered):
    make(covered, pdb(allowed=0))
    code, out, err = kctl("drain", "n1", "--grace-period", "0", "--timeout", "0.5")
    assert code == 1
    assert ('error when evicting pods/"web-1" -n "default" (will retry after 0.1s): '
            "Cannot evict pod as it would violate the pod's disruption budget.") in err
    assert err.count("error when evicting") >= 2
    assert [p.metadata.name for p in covered.objects("pods")] == ["web-1"]


def test_drain_spends_the_budget_when_it_allows(covered):
    make(covered, pdb(allowed=1))
    code, out, err = kctl("drain", "n1", "--grace-period", "0")
    assert code == 0, err
    assert "pod/web-1 evicted" in out and not covered.objects("pods")
    st = covered.objects("poddisruptionbudgets")[0].status
    assert st.disruptions_allowed == 0 and "web-1" in st.disrupted_pods


# ------------------------------------------------------------ rollout ds

def daemonset(image="agent:v1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "main", "image": image}]}}}}


def revision(fake, ds, n, image, cause=None):
    tmpl = codec.from_dict(daemonset(image))
    cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
          "metadata": {"name": f"agent-{n}", "namespace": "default",
                       "annotations": {"kubernetes.io/change-cause": cause} if cause else {}},
          "revision": n}
    obj = codec.from_dict(cr)
    obj.data.CopyFrom(workloads.daemonset_patch(tmpl))
    obj.metadata.owner_references.append(podutil.owner_ref_for(ds))
    return asyncio.run(fake.create(obj))


def test_rollout_status_history_undo_for_a_daemonset(fake):  # noqa: F811
    ds = make(fake, daemonset("agent:v2"))
    revision(fake, ds, 1, "agent:v1", cause="first")
    revision(fake, ds, 2, "agent:v2")
    code, out, err = kctl("rollout", "status", "ds/agent", "--no-watch")
    assert code == 0 and out == "Waiting for daemon set spec update to be observed...\n"
    st = fake.objects("daemonsets")[0]
    st.status.observed_generation, st.status.desired_number_scheduled = 1, 3
    st.status.updated_number_scheduled = 1
    asyncio.run(fake.update_status(st))
    code, out, err = kctl("rollout", "status", "daemonset/agent", "--no-watch")
    assert out == 'Waiting for daemon set "agent" rollout to finish: 1 out of 3 new pods have been updated...\n'
    code, out, err = kctl("rollout", "history", "daemonset/agent")
    assert code == 0, err
    assert out.splitlines() == ["daemonset.apps/agent", "REVISION  CHANGE-CAUSE", "1         first",
                                "2         <none>"]
    code, out, err = kctl("rollout", "history", "daemonset/agent", "--revision", "1")
    assert out.startswith("daemonset.apps/agent with revision #1\n") and "agent:v1" in out
    code, out, err = kctl("rollout", "undo", "daemonset/agent")
    assert (code, out) == (0, "daemonset.apps/agent rolled back\n")
    assert fake.objects("daemonsets")[0].spec.template.spec.containers[0].image == "agent:v1"
    code, out, err = kctl("rollout", "undo", "daemonset/agent", "--to-revision", "1")
    assert out == "daemonset.apps/agent skipped rollback (current template already matches revision 1)\n"


# ---------------------------------------------------------- create job

def test_create_job_from_a_cronjob(fake):  # noqa: F811
    cj = make(fake, {"apiVersion": "batch/v1", "kind": "CronJob",
                     "metadata": {"name": "nightly", "namespace": "default"},
                     "spec": {"schedule": "0 3 * * *", "jobTemplate": {
                         "metadata": {"labels": {"team": "batch"}, "annotations": {"a": "b"}},
                         "spec": {"backoffLimit": 2, "template": {"spec": {
                             "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    code, out, err = kctl("create", "job", "manual-1", "--from=cronjob/nightly")
    assert (code, out) == (0, "job.batch/manual-1 created\n"), err
    job = fake.objects("jobs")[0]
    assert dict(job.metadata.annotations) == {"cronjob.kubernetes.io/instantiate": "manual", "a": "b"}
    assert dict(job.metadata.labels) == {"team": "batch"} and job.spec.backoff_limit == 2
    ref = job.metadata.owner_references[0]
    assert (ref.kind, ref.uid, ref.controller, ref.HasField("block_owner_deletion")) == \
        ("CronJob", cj.metadata.uid, True, False)
    code, out, err = kctl("create", "job", "x", "--from=deploy/web")
    assert code == 1 and "unknown object type deployment" in err
    code, out, err = kctl("create", "job", "y", "--image=busybox", "--", "date")
    assert code == 0 and fake.stored("Job", "y").spec.template.spec.containers[0].command == ["date"]


# ----------------------------------------------------------------- columns

def _obj(manifest, created=86400):
    o = codec.from_dict(manifest)
    o.metadata.creation_timestamp.FromSeconds(created)
    return o


def test_columns_as_kubectl_prints_them():
    """printers_test.go TestPrintJob ("job1" 1/2, "job2" no completions, parallelism 2 -> "0/1 of 2"),
    TestPrintCronJob, TestPrintDaemonSet, TestPrintPodDisruptionBudget, TestPrintControllerRevision."""
    from kubectlish import printers
    at = 86400 + 3600.0
    job = _obj({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job1"},
                "spec": {"completions": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"succeeded": 1, "startTime": "1970-01-02T00:00:00Z",
                           "completionTime": "1970-01-02T00:00:10Z",
                           "conditions": [{"type": "Complete", "status": "True"}]}})
    assert printers.row(job, at=at) == ["job1", "Complete", "1/2", "10s", "60m"]
    job2 = _obj({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job2"}, "spec": {"parallelism": 2}})
    assert printers.row(job2, at=at) == ["job2", "Running", "0/1 of 2", "", "60m"]
    cj = _obj({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj1"},
               "spec": {"schedule": "0/5 * * * ?", "suspend": False},
               "status": {"lastScheduleTime": "1970-01-02T00:59:00Z", "active": [{"name": "a"}]}})
    assert printers.headers("CronJob") == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE",
                                           "AGE"]
    assert printers.row(cj, at=at) == ["cj1", "0/5 * * * ?", "<none>", "False", "1", "60s", "60m"]
    ds = _obj({**daemonset(), "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 2,
                                         "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}})
    assert printers.headers("DaemonSet") == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                                             "NODE SELECTOR", "AGE"]
    assert printers.row(ds, at=at) == ["agent", "3", "2", "1", "2", "1", "<none>", "60m"]
    pdb_ = _obj(pdb(allowed=1))
    assert printers.headers("PodDisruptionBudget") == ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE",
                                                       "ALLOWED DISRUPTIONS", "AGE"]
    assert printers.row(pdb_, at=at) == ["web-pdb", "2", "N/A", "1", "60m"]
    cr = _obj({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {
        "name": "agent-5d8f", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                                   "uid": "u", "controller": True}]}, "revision": 2})
    assert printers.row(cr, at=at) == ["agent-5d8f", "daemonset.apps/agent", "2", "60m"]


def test_set_image_on_a_daemonset(fake):  # noqa: F811
    make(fake, daemonset())
    code, out, err = kctl("set", "image", "ds/agent", "main=agent:v3")
    assert (code, out) == (0, "daemonset.apps/agent image updated\n"), err
    assert fake.objects("daemonsets")[0].spec.template.spec.containers[0].image == "agent:v3"


def fields(out: str) -> dict:
    return {k.strip(): v.strip() for k, sep, v in (ln.partition(":") for ln in out.splitlines()) if sep}


def test_describe_job_cronjob_daemonset_pdb(fake):  # noqa: F811
    """kubectl's JobDescriber / CronJobDescriber / DaemonSetDescriber / PodDisruptionBudgetDescriber layout."""
    make(fake, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
                "spec": {"completions": 5, "parallelism": 2, "completionMode": "Indexed", "backoffLimit": 6,
                         "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                         "template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "c", "image": "perl"}]}}},
                "status": {"active": 2, "ready": 1, "succeeded": 3, "completedIndexes": "0-2"}})
    code, out, err = kctl("describe", "job", "pi")
    assert code == 0, err
    f = fields(out)
    assert f["Pods Statuses"] == "2 Active (1 Ready) / 3 Succeeded / 0 Failed"
    assert (f["Completed Indexes"], f["Completion Mode"], f["Parallelism"], f["Completions"]) == \
        ("0-2", "Indexed", "2", "5")
    assert f["Selector"] == "batch.kubernetes.io/controller-uid=u"
    make(fake, {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "default"},
                "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": {
                    "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}})
    f = fields(kctl("describe", "cj", "cj")[1])
    assert (f["Schedule"], f["Concurrency Policy"], f["Active Jobs"], f["Last Schedule Time"]) == \
        ("*/5 * * * *", "Forbid", "<none>", "<none>")
    make(fake, daemonset())
    f = fields(kctl("describe", "ds", "agent")[1])
    assert (f["Selector"], f["Node-Selector"], f["Desired Number of Nodes Scheduled"], f["Pods Status"]) == \
        ("app=agent", "<none>", "0", "0 Running / 0 Waiting / 0 Succeeded / 0 Failed")
    make(fake, pdb(allowed=1))
    code, out, err = kctl("describe", "pdb", "web-pdb")
    assert [ln.split(":")[0].strip() for ln in out.splitlines()] == [
        "Name", "Namespace", "Min available", "Selector", "Status", "Allowed disruptions", "Current", "Desired",
        "Total", "Events"]
