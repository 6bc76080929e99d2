"""Lists over HTTP as Kubernetes documents them: limit + continue pages,
resourceVersion with resourceVersionMatch=Exact (the past state; 410 once
compacted), selectors, Tables, and delete collection."""
from __future__ import annotations

from tests.integration.http.test_http_errors import POD, call

NS = "/api/v1/namespaces/lists/pods"


def names(body) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


def test_pages_exact_resource_version_tables_and_delete_collection(kube):
    call(kube, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": "lists"}})
    for i in range(5):
        call(kube, "POST", NS, {**POD, "metadata": {"name": f"l{i}", "labels": {"even": str(i % 2 == 0).lower()}}})
    _, first, _ = call(kube, "GET", NS + "?limit=2")
    assert names(first) == ["l0", "l1"] and first["metadata"]["continue"]
    _, second, _ = call(kube, "GET", NS + "?limit=2&continue=" + first["metadata"]["continue"])
    _, third, _ = call(kube, "GET", NS + "?limit=2&continue=" + second["metadata"]["continue"])
    assert names(second) == ["l2", "l3"] and names(third) == ["l4"] and "continue" not in third["metadata"]
    code, st, _ = call(kube, "GET", NS + "?continue=garbage")
    assert (code, st["reason"]) == (400, "BadRequest")

    before = first["metadata"]["resourceVersion"]
    call(kube, "DELETE", NS + "/l0")
    _, now, _ = call(kube, "GET", NS)
    _, then, _ = call(kube, "GET", f"{NS}?resourceVersion={before}&resourceVersionMatch=Exact")
    assert "l0" not in names(now) and "l0" in names(then) and then["metadata"]["resourceVersion"] == before
    assert call(kube, "GET", NS + "?resourceVersionMatch=Exact")[0] == 400

    _, evens, _ = call(kube, "GET", NS + "?labelSelector=even%3Dtrue")
    assert names(evens) == ["l2", "l4"]
    _, table, headers = call(kube, "GET", NS + "?limit=1", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert headers["Content-Type"].startswith("application/json;as=Table")
    assert table["kind"] == "Table" and table["metadata"]["continue"]
    assert [r["cells"][0] for r in table["rows"]] == ["l1"]

    code, gone, _ = call(kube, "DELETE", NS + "?labelSelector=even%3Dtrue")
    assert code == 200 and names(gone) == ["l2", "l4"]
    _, left, _ = call(kube, "GET", NS)
    assert names(left) == ["l1", "l3"]

    kube.etcd.compact()
    code, st, _ = call(kube, "GET", f"{NS}?resourceVersion={before}&resourceVersionMatch=Exact")
    assert (code, st["reason"]) == (410, "Expired")
