"""The HTTP API's pure parts: server-side Tables cut from the same columns
as `kctl get`, discovery derived from machinery.kinds, metav1.Status from
ApiErrors, fieldValidation modes, kubectl's protobuf Eviction bodies."""
from __future__ import annotations

import pytest

from apiserver import fieldmanager
from apiserver.http import discovery, k8sproto, wire
from apiserver.http.resources import parse
from kubectlish import printers
from machinery import errors, kinds
from tests.cluster import new_object


@pytest.mark.parametrize("kind", [k.kind for k in kinds.KINDS])
def test_server_table_and_kctl_get_print_the_same_columns_and_cells(kind):
    obj = new_object(kind, "x1", labels={"app": "a"})
    obj.metadata.creation_timestamp.seconds = 1_000_000_000          # years ago: AGE is stable
    table = wire.table(kinds.BY_KIND[kind], [obj])
    cols, cells = table["columnDefinitions"], table["rows"][0]["cells"]
    assert len(cells) == len(cols)
    for wide in (False, True):
        shown = [i for i, c in enumerate(cols) if wide or c["priority"] == 0]
        assert [cols[i]["name"] for i in shown] == printers.headers(kind, wide=wide)
        assert [cells[i] for i in shown] == printers.row(obj, wide=wide)
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["labels"] == {"app": "a"}


def test_table_include_object_modes():
    pod = new_object("Pod", "p")
    info = kinds.BY_KIND["Pod"]
    assert wire.table(info, [pod], "Object")["rows"][0]["object"]["kind"] == "Pod"
    assert "object" not in wire.table(info, [pod], "None")["rows"][0]
    assert wire.table(info, [pod])["columnDefinitions"][0]["format"] == "name"


def test_discovery_lists_subresources_categories_and_short_names():
    core = discovery.resource_list("", "v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["categories"] == ["all"]
    assert by_name["pods/eviction"] == {"name": "pods/eviction", "singularName": "", "namespaced": True,
                                        "kind": "Eviction", "verbs": ["create"], "group": "policy",
                                        "version": "v1"}
    assert "categories" not in by_name["nodes"] and by_name["nodes"]["namespaced"] is False
    apps = {r["name"]: r for r in discovery.resource_list("apps", "v1")["resources"]}
    assert apps["deployments/scale"]["group"] == "autoscaling" and apps["deployments/scale"]["kind"] == "Scale"
    agg = discovery.aggregated(False)
    groups = [i["metadata"]["name"] for i in agg["items"]]
    from machinery import kinds
    served = list(dict.fromkeys(i.api_version.split("/")[0] for i in kinds.KINDS if "/" in i.api_version))
    reviews = ["authorization.k8s.io", "authentication.k8s.io"]          # the create-only review APIs
    assert groups == served + reviews + ["metrics.k8s.io"]
    assert {"apps", "coordination.k8s.io", "batch", "policy"} <= set(groups)
    authz = next(i for i in agg["items"] if i["metadata"]["name"] == "authorization.k8s.io")["versions"][0]
    local = next(r for r in authz["resources"] if r["resource"] == "localsubjectaccessreviews")
    assert local == {"resource": "localsubjectaccessreviews", "singularResource": "localsubjectaccessreview",
                     "responseKind": {"group": "authorization.k8s.io", "version": "v1",
                                      "kind": "LocalSubjectAccessReview"},
                     "scope": "Namespaced", "verbs": ["create"]}
    dep = next(r for r in agg["items"][0]["versions"][0]["resources"] if r["resource"] == "deployments")
    assert dep["resource"] == "deployments" and {s["subresource"] for s in dep["subresources"]} == {"status",
                                                                                                   "scale"}
    assert discovery.resource_list("example.com", "v1") is None
    batch = {r["name"]: r for r in discovery.resource_list("batch", "v1")["resources"]}
    assert batch["cronjobs"]["shortNames"] == ["cj"] and batch["jobs"]["categories"] == ["all"]


def test_paths_parse_into_kind_namespace_name_subresource():
    t = parse("", "v1", ["namespaces", "default", "pods", "p", "eviction"])
    assert (t.info.kind, t.namespace, t.name, t.sub) == ("Pod", "default", "p", "eviction")
    t = parse("", "v1", ["namespaces", "kube-system", "status"])
    assert (t.info.kind, t.name, t.sub) == ("Namespace", "kube-system", "status")
    assert parse("", "v1", ["pods"]).namespace == ""
    for bad in (["namespaces", "x", "nodes"], ["pods", "p", "scale"], ["gizmos"], ["pods", "p", "log", "x"]):
        with pytest.raises(errors.NotFound):
            parse("", "v1", bad)


def test_status_carries_reason_code_and_field_causes():
    err = errors.Invalid.of("Deployment.apps", "web", [errors.invalid("spec.replicas", -1, "must be >= 0")],
                            kind="Deployment", group="apps")
    st = wire.status_of(err)
    assert (st["kind"], st["status"], st["reason"], st["code"]) == ("Status", "Failure", "Invalid", 422)
    assert st["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                        "message": "Invalid value: -1: must be >= 0"}]


def test_field_validation_modes():
    info = kinds.BY_KIND["Pod"]

    def body():
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
                "spec": {"containers": [{"name": "c", "image": "i", "colour": "red"}]}}
    with pytest.raises(errors.BadRequest) as exc:
        wire.decode(body(), info, "Strict")
    assert [c.field for c in exc.value.causes] == ["metadata.bogus", "spec.containers[0].colour"]
    obj, warnings = wire.decode(body(), info, "Warn")
    assert obj.metadata.name == "p" and warnings == ['unknown field "metadata.bogus"',
                                                     'unknown field "spec.containers[0].colour"']
    assert wire.decode(body(), info, "Ignore")[1] == []
    with pytest.raises(errors.BadRequest):
        wire.decode({"apiVersion": "apps/v1", "kind": "Pod"}, info)


def _wire(api_version: str, kind: str, msg) -> bytes:
    unknown = k8sproto.message_class(k8sproto.UNKNOWN)(raw=msg.SerializeToString())
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind = api_version, kind
    return k8sproto.MAGIC + unknown.SerializeToString()


def test_protobuf_eviction_body_reads_as_json():
    ev = k8sproto.message_class("k8s.io.api.policy.v1.Eviction")()
    ev.metadata.name, ev.metadata.namespace = "p1", "default"
    ev.deleteOptions.gracePeriodSeconds = 0              # written, as Go writes it: reads as unset
    ev.deleteOptions.preconditions.uid = "u1"
    ev.deleteOptions.dryRun.append("All")
    assert wire.parse_document(_wire("policy/v1", "Eviction", ev), k8sproto.MEDIA_TYPE) == {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p1", "namespace": "default"},
        "deleteOptions": {"preconditions": {"uid": "u1"}, "dryRun": ["All"]}}
    with pytest.raises(errors.BadRequest):
        k8sproto.decode(b"nope")
    with pytest.raises(errors.UnsupportedMediaType):
        k8sproto.decode(_wire("example.com/v1", "Widget", ev))


def test_protobuf_deployment_reads_as_the_json_kubectl_create_means():
    d = k8sproto.message_class("k8s.io.api.apps.v1.Deployment")()
    d.metadata.name = "web"
    d.metadata.labels["app"] = "web"
    d.metadata.creationTimestamp.SetInParent()           # Go writes the zero Time: omitted
    d.spec.replicas = 3
    d.spec.selector.matchLabels["app"] = "web"
    d.spec.strategy.rollingUpdate.maxSurge.type = 1
    d.spec.strategy.rollingUpdate.maxSurge.strVal = "25%"
    c = d.spec.template.spec.containers.add(name="nginx", image="nginx")
    c.resources.limits["cpu"].string = "500m"
    c.ports.add(containerPort=80)
    assert k8sproto.decode(_wire("apps/v1", "Deployment", d)) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                 "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                       "resources": {"limits": {"cpu": "500m"}},
                                                       "ports": [{"containerPort": 80}]}]}}}}


def test_protobuf_secret_and_configmap_bodies_read_as_json():
    """kubectl create secret|configmap send k8s.io/api's wire format (maps, bytes as base64 in JSON)."""
    s = k8sproto.message_class("k8s.io.api.core.v1.Secret")(type="Opaque")
    s.metadata.name = "db"
    s.metadata.labels["app"] = "web"
    s.data["password"] = b"\x00pw"
    assert k8sproto.decode(_wire("v1", "Secret", s)) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "labels": {"app": "web"}},
        "data": {"password": "AHB3"}, "type": "Opaque"}
    cm = k8sproto.message_class("k8s.io.api.core.v1.ConfigMap")(immutable=True)
    cm.metadata.name = "settings"
    cm.data["mode"] = "fast"
    cm.binaryData["blob"] = b"\x01"
    assert k8sproto.decode(_wire("v1", "ConfigMap", cm)) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"mode": "fast"}, "binaryData": {"blob": "AQ=="}, "immutable": True}


def test_every_kind_kctl_serves_has_its_kubernetes_wire_type():
    """kubectl's typed calls may send any served kind as protobuf: scripts/gen_k8s_wire.py
    must have been rerun after a kind was added (its ROOTS come from machinery.kinds)."""
    from machinery import kinds
    missing = [i.kind for i in kinds.KINDS if i.api_version not in k8sproto.PACKAGES]
    assert not missing, f"apiVersion without a k8s.io/api package in k8sproto.PACKAGES: {missing}"
    for info in kinds.KINDS:
        k8sproto.message_class(f"{k8sproto.PACKAGES[info.api_version]}.{info.kind}")


def test_with_managed_fields_builds_the_entries_the_decoder_would():
    from machinery import codec
    entries = [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2026-01-02T03:04:05Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {'k:{"name":"main"}': {".": {}}}}}},
               {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}]
    pod = new_object("Pod", "p")
    pod.metadata.managed_fields.add(manager="stale")
    out = fieldmanager.with_managed_fields(pod, {"metadata": {"managedFields": entries}})
    assert codec.to_dict(out)["metadata"]["managedFields"] == entries
    bad = [dict(entries[0], time="yesterday")]           # malformed as sent: the decoder's 400
    with pytest.raises(errors.DecodeError, match=r"managedFields\[0\]\.time"):
        fieldmanager.with_managed_fields(new_object("Pod", "q"), {"metadata": {"managedFields": bad}})
