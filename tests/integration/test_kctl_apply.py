"""`kctl apply` against a real etcd + apiserver: every example manifest,
re-applying `get -o yaml` output, configured/unchanged, field removal,
allocated values kept, unknown kinds/fields and invalid objects refused."""
from __future__ import annotations

import json

import yaml

from tests import k8s_examples
from tests.integration.kctl_helpers import call, cluster_fixture, kctl

server = cluster_fixture()

EXAMPLES = k8s_examples.DIR
FILES = k8s_examples.files()


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_example_applies_and_reapplies_unchanged(server):
    """Each file goes to its own namespace (the examples reuse names); files
    that name their namespace get it created first. Then `get -o yaml` of
    every applied object re-applies as `unchanged`, and so does the file."""
    k8s_examples.require()
    assert len(FILES) >= 30
    kinds_applied = set()
    applied = []   # (kind/name, namespace)
    for i, rel in enumerate(FILES):
        path = EXAMPLES / rel
        docs = _docs(path)
        explicit = {d.get("metadata", {}).get("namespace") for d in docs} - {None}
        for ns in explicit:
            kctl(server, "create", "-f", "-", input=json.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        args = ["apply", "-f", str(path)]
        if not explicit:
            ns = f"ex{i}"
            assert kctl(server, "create", "-f", "-", input=json.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).code == 0
            args += ["-n", ns]
        else:
            ns = explicit.pop()
        r = kctl(server, *args)
        assert r.code == 0, (rel, r)       # every example applies, nothing refused
        lines = r.out.splitlines()
        assert len(lines) == len(docs) and all(ln.endswith(" created") for ln in lines), (rel, r)
        for ln in lines:
            applied.append((ln.split()[0], ns))
            kinds_applied.add(ln.split("/")[0])
        again = kctl(server, *args)
        assert again.code == 0 and all(ln.endswith(" unchanged") for ln in again.out.splitlines()), (rel, again)
    assert "persistentvolumeclaim" in kinds_applied           # wordpress's wp-pv-claim
    for ref, ns in applied:
        y = kctl(server, "get", ref, "-n", ns, "-o", "yaml")
        assert y.code == 0, y
        assert "resourceVersion" in y.out and "uid" in y.out
        r = kctl(server, "apply", "-f", "-", "-n", ns, input=y.out)
        assert r.code == 0 and r.out == f"{ref} unchanged\n", (ref, r, y.out)


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: frontend}
spec:
  replicas: 2
  minReadySeconds: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: nginx:1
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"""


def test_configured_then_removed_fields_are_removed_and_others_kept(server):
    kctl(server, "create", "-f", "-", input='{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"t1"}}')
    assert kctl(server, "apply", "-n", "t1", "-f", "-", input=DEPLOY).out == "deployment.apps/web created\n"
    # someone else adds a label: apply must keep it
    assert kctl(server, "label", "-n", "t1", "deploy", "web", "owner=ops").code == 0
    edited = DEPLOY.replace("  minReadySeconds: 5\n", "").replace(" tier: frontend", "") \
        .replace(', {name: B, value: "2"}', "").replace("replicas: 2", "replicas: 3")
    r = kctl(server, "apply", "-n", "t1", "-f", "-", input=edited)
    assert r.out == "deployment.apps/web configured\n", r
    d = json.loads(kctl(server, "get", "deploy/web", "-n", "t1", "-o", "json").out)
    assert "minReadySeconds" not in d["spec"]
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert d["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    # server defaults survive
    assert d["spec"]["strategy"]["type"] == "RollingUpdate" and d["spec"]["revisionHistoryLimit"] == 10
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert "minReadySeconds" not in last["spec"] and "status" not in last
    assert kctl(server, "apply", "-n", "t1", "-f", "-", input=edited).out == "deployment.apps/web unchanged\n"


SVC = """
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def test_allocated_cluster_ip_and_node_port_survive_reapply(server):
    assert kctl(server, "apply", "-f", "-", input=SVC).code == 0
    before = json.loads(kctl(server, "get", "svc", "s", "-o", "json").out)["spec"]
    r = kctl(server, "apply", "-f", "-", input=SVC.replace("8080", "9090"))
    assert r.out == "service/s configured\n", r
    after = json.loads(kctl(server, "get", "svc", "s", "-o", "json").out)["spec"]
    assert after["clusterIP"] == before["clusterIP"]
    assert after["ports"][0]["nodePort"] == before["ports"][0]["nodePort"]
    assert after["ports"][0]["targetPort"] == 9090


def test_invalid_document_reported_like_kubectl_and_others_applied(server):
    bad = DEPLOY.replace("name: web", "name: bad").replace("replicas: 2", "replicas: -1")
    good = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok-pod}\nspec: {containers: [{name: c, image: x}]}\n"
    r = kctl(server, "apply", "-f", "-", input=bad + good)
    assert r.code == 1
    assert 'The Deployment "bad" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0' \
        in r.err, r
    assert r.out == "pod/ok-pod created\n"


def test_multiple_causes_are_listed(server):
    bad = DEPLOY.replace("name: web", "name: Bad_Name").replace("replicas: 2", "replicas: -1")
    r = kctl(server, "apply", "-f", "-", input=bad)
    assert r.code == 1
    assert r.err.startswith('The Deployment "Bad_Name" is invalid: \n* metadata.name: Invalid value: "Bad_Name"'), r
    assert "\n* spec.replicas: Invalid value: -1" in r.err


def test_unknown_fields_are_all_named_and_nothing_from_the_file_applied(server):
    doc = DEPLOY.replace("name: web", "name: typo").replace("minReadySeconds", "minReadySecs") \
        .replace("image: nginx:1", "image: nginx:1\n        imagePolicy: Always")
    pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: typo-pod}\nspec: {containers: [{name: c, image: x}]}\n"
    r = kctl(server, "apply", "-f", "-", input=pod + "---\n" + doc)
    assert r.code == 1 and r.out == ""
    assert 'unknown field "spec.minReadySecs"' in r.err
    assert 'unknown field "spec.template.spec.containers[0].imagePolicy"' in r.err
    assert r.err.startswith('error: error validating "STDIN": Deployment in version "apps/v1" cannot be handled')
    assert "1 of its 2 documents could not be decoded; not applied: pod/typo-pod\n" in r.err
    assert kctl(server, "get", "pod", "typo-pod").code == 1


def test_flow_style_multi_document_with_markers(server):
    text = ('--- {apiVersion: v1, kind: Pod, metadata: {name: f1}, spec: {containers: [{name: c, image: x}]}}\n'
            '...\n---\n{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "f2"},'
            ' "spec": {"containers": [{"name": "c", "image": "x"}]}}\n...')
    r = kctl(server, "apply", "-f", "-", input=text)
    assert r.out == "pod/f1 created\npod/f2 created\n", r


def test_directory_recursive_and_namespace_mismatch(server, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: d1}\n"
                                     "spec: {containers: [{name: c, image: x}]}\n")
    (tmp_path / "sub" / "b.yml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: d2}\n"
                                            "spec: {containers: [{name: c, image: x}]}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert kctl(server, "apply", "-f", str(tmp_path)).out == "pod/d1 created\n"
    assert kctl(server, "apply", "-R", "-f", str(tmp_path)).out == "pod/d1 unchanged\npod/d2 created\n"
    r = kctl(server, "apply", "-n", "kube-system", "-f", "-",
             input="apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: default}\n"
                   "spec: {containers: [{name: c, image: x}]}\n")
    assert r.code == 1 and 'the namespace from the provided object "default" does not match' in r.err


def test_create_refuses_existing_and_apply_adopts_created_object(server):
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: c1, labels: {a: b}}\nspec: {containers: [{name: c, image: x}]}\n"
    assert kctl(server, "create", "-f", "-", input=pod).out == "pod/c1 created\n"
    r = kctl(server, "create", "-f", "-", input=pod)
    assert r.code == 1 and r.err.startswith('Error from server (AlreadyExists): error when creating "STDIN": ')
    r = kctl(server, "apply", "-f", "-", input=pod.replace("{a: b}", "{a: c}"))
    assert r.out == "pod/c1 configured\n" and "missing the kubectl.kubernetes.io/last-applied" in r.err
    labels = call(server, lambda c: c.get("pods", "c1", "default")).metadata.labels
    assert dict(labels) == {"a": "c"}


def test_list_output_reapplies_unchanged(server):
    kctl(server, "create", "namespace", "lists")
    docs = "---\n".join(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: l{i}}}\n"
                        f"spec: {{containers: [{{name: c, image: x, resources: {{requests: {{cpu: '0.1'}}}}}}]}}\n"
                        for i in range(3))
    assert kctl(server, "apply", "-n", "lists", "-f", "-", input=docs).code == 0
    listing = kctl(server, "get", "pods", "-n", "lists", "-o", "yaml").out
    assert "kind: List" in listing
    r = kctl(server, "apply", "-n", "lists", "-f", "-", input=listing)
    assert r.out == "pod/l0 unchanged\npod/l1 unchanged\npod/l2 unchanged\n", r
    listing = kctl(server, "get", "pods", "-n", "lists", "-o", "json").out
    assert kctl(server, "apply", "-n", "lists", "-f", "-", input=listing).out.count("unchanged") == 3


def test_service_type_change_from_node_port_to_cluster_ip(server):
    svc = SVC.replace("name: s}", "name: s2}")
    assert kctl(server, "apply", "-f", "-", input=svc).code == 0
    r = kctl(server, "apply", "-f", "-", input=svc.replace("  type: NodePort\n", ""))
    assert r.out == "service/s2 configured\n", r
    spec = json.loads(kctl(server, "get", "svc", "s2", "-o", "json").out)["spec"]
    assert spec["type"] == "ClusterIP" and "nodePort" not in spec["ports"][0]


def test_server_dry_run_stores_nothing(server):
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: dry}\nspec: {containers: [{name: c, image: x}]}\n"
    r = kctl(server, "apply", "--dry-run=server", "-f", "-", input=pod)
    assert r.out == "pod/dry created (server dry run)\n", r
    assert kctl(server, "get", "pod", "dry").code == 1
    assert kctl(server, "apply", "-f", "-", input=pod).code == 0
    r = kctl(server, "apply", "--dry-run=server", "-f", "-", input=pod.replace("image: x", "image: y"))
    assert r.out == "pod/dry configured (server dry run)\n"
    assert call(server, lambda c: c.get("pods", "dry", "default")).spec.containers[0].image == "x"
    bad = pod.replace("name: dry}", "name: dry2}").replace("image: x", "image: ''")
    r = kctl(server, "apply", "--dry-run=server", "-f", "-", input=bad)
    assert r.code == 1 and r.err.startswith('The Pod "dry2" is invalid: spec.containers[0].image: Required value')
