"""A StatefulSet over HTTP: created from JSON with its defaults filled in, and its
autoscaling/v1 `scale` subresource (what `kubectl scale sts` and HPAs use)."""
from __future__ import annotations

from tests.integration.http.test_http_errors import call

STS = "/apis/apps/v1/namespaces/default/statefulsets"


def test_statefulset_defaults_and_scale_subresource(kube):
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    code, out, _ = call(kube, "POST", STS, sts)
    assert code == 201, out
    assert (out["spec"]["replicas"], out["spec"]["podManagementPolicy"], out["spec"]["updateStrategy"]) == \
        (1, "OrderedReady", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    assert out["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    code, scale, _ = call(kube, "GET", f"{STS}/db/scale")
    assert code == 200 and (scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]) == \
        ("Scale", 1, "app=db")
    code, out, _ = call(kube, "PATCH", f"{STS}/db/scale", {"spec": {"replicas": 4}},
                        content_type="application/merge-patch+json")
    assert code == 200 and out["spec"]["replicas"] == 4
    assert call(kube, "GET", f"{STS}/db")[1]["spec"]["replicas"] == 4
    code, st, _ = call(kube, "PATCH", f"{STS}/db", {"spec": {"serviceName": "other"}},
                       content_type="application/merge-patch+json")
    assert code == 422 and "updates to statefulset spec for fields other than" in st["message"]


def test_real_kubectl_applies_the_example_and_scales_it(kube):
    """examples/statefulset.yaml through the real kubectl: apply, get (server-side Table columns), scale,
    and a re-apply that changes nothing."""
    import pathlib
    example = str(pathlib.Path(__file__).resolve().parents[3] / "examples" / "statefulset.yaml")
    out = kube.ok("apply", "-f", example)
    assert "service/kv created" in out and "statefulset.apps/kv created" in out, out
    lines = kube.ok("get", "sts", "kv", "-o", "wide").splitlines()
    assert lines[0].split() == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    assert lines[1].split()[:2] == ["kv", "0/3"] and lines[1].split()[3:] == ["echo", "kctl/echo:latest"]
    assert "statefulset.apps/kv scaled" in kube.ok("scale", "sts", "kv", "--replicas=5")
    assert call(kube, "GET", f"{STS}/kv")[1]["spec"]["replicas"] == 5
    out = kube.ok("apply", "-f", example)
    assert "statefulset.apps/kv configured" in out or "statefulset.apps/kv unchanged" in out, out
