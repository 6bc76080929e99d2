"""kctl verbs for StatefulSets on the FakeClient: rollout status (kubectl's StatefulSetStatusViewer),
history and undo through ControllerRevisions, describe (StatefulSetDescriber), columns, scale."""
from __future__ import annotations

import asyncio

from controllers import podutil
from kubectlish import printers
from machinery import codec, workloads
from tests.unit.test_kctl_commands import fake, kctl, make  # noqa: F401  (fixture)
from tests.unit.test_kctl_workloads import fields


def sts(image="nginx:2", partition=None) -> dict:
    ru = {"partition": partition} if partition is not None else None
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": {"type": "RollingUpdate", **({"rollingUpdate": ru} if ru else {})},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": image}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}


def revision(fake, owner, n, image):  # noqa: F811
    cr = codec.from_dict({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                          "metadata": {"name": f"web-{n}", "namespace": "default"}, "revision": n})
    cr.data.CopyFrom(workloads.daemonset_patch(codec.from_dict(sts(image))))
    cr.metadata.owner_references.append(podutil.owner_ref_for(owner))
    return asyncio.run(fake.create(cr))


def set_status(fake, **kw):  # noqa: F811
    st = fake.objects("statefulsets")[0]
    for k, v in kw.items():
        setattr(st.status, k, v)
    asyncio.run(fake.update_status(st))


def status_line(*args):
    return kctl("rollout", "status", *args, "--no-watch")[1]


def test_rollout_status_messages(fake):  # noqa: F811
    """StatefulSetStatusViewer: spec not observed, pods not ready, partitioned, full rolling update."""
    make(fake, sts(partition=1))
    assert status_line("sts/web") == "Waiting for statefulset spec update to be observed...\n"
    set_status(fake, observed_generation=1, ready_replicas=1)
    assert status_line("statefulset/web") == "Waiting for 2 pods to be ready...\n"
    set_status(fake, ready_replicas=3, updated_replicas=1)
    assert status_line("sts/web") == "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been " \
                                     "updated...\n"
    set_status(fake, updated_replicas=2)
    assert status_line("sts/web") == "partitioned roll out complete: 2 new pods have been updated...\n"


def test_rollout_status_without_partition_and_on_delete(fake):  # noqa: F811
    make(fake, sts())
    set_status(fake, observed_generation=1, ready_replicas=3, updated_replicas=1, current_replicas=2,
               current_revision="web-1", update_revision="web-2")
    assert status_line("sts/web") == "waiting for statefulset rolling update to complete 1 pods at revision " \
                                     "web-2...\n"
    set_status(fake, current_replicas=3, current_revision="web-2")
    assert status_line("sts/web") == "statefulset rolling update complete 3 pods at revision web-2...\n"
    obj = fake.objects("statefulsets")[0]
    obj.spec.update_strategy.type = "OnDelete"
    asyncio.run(fake.update(obj))
    code, out, err = kctl("rollout", "status", "sts/web", "--no-watch")
    assert code != 0 and "rollout status is only available for RollingUpdate strategy type" in err


def test_rollout_history_and_undo(fake):  # noqa: F811
    owner = make(fake, sts("nginx:2"))
    revision(fake, owner, 1, "nginx:1")
    revision(fake, owner, 2, "nginx:2")
    code, out, err = kctl("rollout", "history", "statefulset/web")
    assert code == 0, err
    assert out.splitlines() == ["statefulset.apps/web", "REVISION  CHANGE-CAUSE", "1         <none>",
                                "2         <none>"]
    code, out, err = kctl("rollout", "undo", "sts/web")
    assert (code, out) == (0, "statefulset.apps/web rolled back\n"), err
    assert fake.objects("statefulsets")[0].spec.template.spec.containers[0].image == "nginx:1"


def test_describe_columns_and_scale(fake):  # noqa: F811
    """StatefulSetDescriber's fields (Replicas, Update Strategy, Partition, Volume Claims) and printStatefulSet."""
    make(fake, sts(partition=0))
    set_status(fake, replicas=3, ready_replicas=2)
    code, out, err = kctl("describe", "sts", "web")
    assert code == 0, err
    f = fields(out)
    assert (f["Selector"], f["Replicas"], f["Update Strategy"], f["Partition"]) == \
        ("app=web", "3 desired | 3 total", "RollingUpdate", "0")
    assert (f["StorageClass"], f["Capacity"], f["Access Modes"]) == ("local-path", "1Gi", "[ReadWriteOnce]")
    obj = fake.objects("statefulsets")[0]
    assert printers.headers("StatefulSet") == ["NAME", "READY", "AGE"]
    assert printers.row(obj)[:2] == ["web", "2/3"]
    assert printers.row(obj, wide=True)[3:] == ["nginx", "nginx:2"]
    code, out, err = kctl("scale", "sts/web", "--replicas", "5")
    assert (code, out) == (0, "statefulset.apps/web scaled\n"), err
    assert fake.objects("statefulsets")[0].spec.replicas == 5
    code, out, err = kctl("set", "image", "sts/web", "nginx=nginx:3")
    assert (code, out) == (0, "statefulset.apps/web image updated\n"), err
    assert fake.objects("statefulsets")[0].spec.template.spec.containers[0].image == "nginx:3"
