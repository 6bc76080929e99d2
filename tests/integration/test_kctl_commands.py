"""kctl's other verbs against a real etcd + apiserver: get (tables, -o,
-A, -l, --field-selector, --watch), describe with events, delete with
grace/force, label/annotate/taint, scale, set image, cordon/uncordon,
rollout history/undo on hand-made ReplicaSets, api-resources, version, and
the real console script's exit codes."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time

import pytest

from machinery import codec
from tests.integration.kctl_helpers import call, cluster_fixture, kctl, kctl_subprocess

server = cluster_fixture()


def pod_yaml(name, labels="{app: web}", ns=None):
    meta = f"{{name: {name}, labels: {labels}" + (f", namespace: {ns}" if ns else "") + "}"
    return f"apiVersion: v1\nkind: Pod\nmetadata: {meta}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n"


NODE = """{apiVersion: v1, kind: Node, metadata: {name: %s, labels: {node-role.kubernetes.io/worker: ""}},
 spec: {}}"""


@pytest.fixture(scope="module")
def seeded(server):
    assert kctl(server, "create", "namespace", "other").code == 0
    docs = "---\n".join([pod_yaml("web-1"), pod_yaml("web-2"), pod_yaml("db-1", "{app: db}"),
                         pod_yaml("far", "{app: web}", ns="other")])
    r = kctl(server, "apply", "-f", "-", input=docs)
    assert r.code == 0, r
    for n in ("n1", "n2"):
        assert kctl(server, "apply", "-f", "-", input=NODE % n).code == 0
    return server


def test_get_table_and_named_and_missing(seeded):
    r = kctl(seeded, "get", "pods")
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [ln.split()[0] for ln in lines[1:]] == ["db-1", "web-1", "web-2"]
    assert lines[1].split()[1:4] == ["0/1", "Pending", "0"]
    r = kctl(seeded, "get", "po", "web-1", "nope")
    assert r.code == 1 and r.err == 'Error from server (NotFound): pods "nope" not found\n'
    assert r.out.splitlines()[1].startswith("web-1 ")
    r = kctl(seeded, "get", "pods", "-n", "kube-public")
    assert r.code == 0 and r.out == "" and r.err == "No resources found in kube-public namespace.\n"


def test_get_output_formats_selectors_and_all_namespaces(seeded):
    assert kctl(seeded, "get", "pods", "-l", "app=web", "-o", "name").out == "pod/web-1\npod/web-2\n"
    assert kctl(seeded, "get", "pods", "--field-selector", "metadata.name=db-1", "-o", "name").out == "pod/db-1\n"
    one = json.loads(kctl(seeded, "get", "pod/web-1", "-o", "json").out)
    assert one["kind"] == "Pod" and one["metadata"]["name"] == "web-1"
    lst = json.loads(kctl(seeded, "get", "pods", "-o", "json").out)
    assert lst["kind"] == "List" and len(lst["items"]) == 3
    r = kctl(seeded, "get", "pods", "-A", "-l", "app=web")
    rows = [ln.split() for ln in r.out.splitlines()]
    assert rows[0][:2] == ["NAMESPACE", "NAME"]
    assert [(x[0], x[1]) for x in rows[1:]] == [("default", "web-1"), ("default", "web-2"), ("other", "far")]
    r = kctl(seeded, "get", "pods", "--show-labels", "--no-headers", "-l", "app=db")
    assert r.out.split()[0] == "db-1" and r.out.split()[-1] == "app=db"
    r = kctl(seeded, "get", "pods,ns", "-o", "wide")
    assert "pod/web-1" in r.out and "namespace/other" in r.out and "\n\n" in r.out
    assert "NOMINATED NODE" in r.out
    r = kctl(seeded, "get", "nodes")
    assert r.out.splitlines()[1].split()[:3] == ["n1", "Unknown", "worker"]


def test_get_all_and_unknown_kind(seeded):
    r = kctl(seeded, "get", "all")
    assert "pod/web-1" in r.out and "deployment.apps/" not in r.out.split("\n\n")[0]
    r = kctl(seeded, "get", "widgets")
    assert r.code == 1 and r.err == 'error: the server doesn\'t have a resource type "widgets"\n'


def watch_lines(seeded, args, n_before, change, n_after):
    """Start `kctl get ... -w`, read n_before lines (the listing is done, so
    the watch covers everything after it), make the change, read n_after
    more lines, stop the process."""
    exe = os.path.join(os.path.dirname(sys.executable), "kctl")
    proc = subprocess.Popen([exe, "--server", seeded, "get", *args, "-w", "--request-timeout", "60s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(n_before)]
        change()
        lines += [proc.stdout.readline() for _ in range(n_after)]
    finally:
        proc.kill()
        proc.wait()
    return [ln.rstrip("\n") for ln in lines]


def test_get_watch_prints_rows_for_changes(seeded):
    assert kctl(seeded, "apply", "-f", "-", input=pod_yaml("w0", "{app: watched}")).code == 0

    def change():
        assert kctl(seeded, "apply", "-f", "-", input=pod_yaml("w1", "{app: watched}")).code == 0
        assert kctl(seeded, "label", "pod", "w1", "x=y").code == 0
        assert kctl(seeded, "delete", "pod", "w0").code == 0
    lines = watch_lines(seeded, ["pods", "-l", "app=watched"], 2, change, 3)
    assert lines[0].split()[:2] == ["NAME", "READY"], lines
    assert [ln.split()[0] for ln in lines[1:]] == ["w0", "w1", "w1", "w0"], lines


def test_get_watch_named_object_prints_only_changes(seeded):
    lines = watch_lines(seeded, ["pod", "db-1", "--show-labels"], 2,
                        lambda: kctl(seeded, "label", "pod", "db-1", "watched=yes"), 1)
    assert [ln.split()[0] for ln in lines] == ["NAME", "db-1", "db-1"], lines
    # the third line is the change, not a repeat of the listing
    assert "watched=yes" not in lines[1] and lines[2].endswith("app=db,watched=yes"), lines


def test_describe_pod_with_events_and_decision(seeded):
    pod = call(seeded, lambda c: c.get("pods", "web-1", "default"))
    ev = codec.from_dict({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-1.abc", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": pod.metadata.uid},
        "reason": "FailedScheduling", "type": "Warning", "source": {"component": "default-scheduler"},
        "message": "0/2 nodes are available: 2 Insufficient cpu.", "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"})
    call(seeded, lambda c: c.create(ev))
    decision = {"v": 1, "time": "2026-01-01T00:00:00Z", "node": None, "nodes": 2, "feasible": 0, "scored": 0,
                "filtered": [{"reason": "Insufficient cpu", "count": 2, "nodes": ["n1", "n2"]}],
                "scores": [], "weights": {}}
    assert kctl(seeded, "annotate", "pod", "web-1", "scheduler.kctl.io/decision=" + json.dumps(decision)).code == 0
    r = kctl(seeded, "describe", "pod", "web-1")
    assert r.code == 0, r
    out = r.out
    assert out.startswith("Name:             web-1\nNamespace:        default\n")
    assert "Containers:\n  c:\n" in out and re.search(r"\n    Image: +busybox\n", out), out
    assert "Scheduling Decision:" in out and "Insufficient cpu" in out and "n1, n2" in out
    assert "Events:\n  Type     Reason            Age" in out
    assert "Warning  FailedScheduling" in out and "0/2 nodes are available: 2 Insufficient cpu." in out
    r = kctl(seeded, "get", "events")
    assert r.out.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "pod/web-1" in r.out
    assert kctl(seeded, "describe", "pod", "nope").err == 'Error from server (NotFound): pods "nope" not found\n'
    assert "Taints:" in kctl(seeded, "describe", "node", "n1").out
    assert "Status:       Active" in kctl(seeded, "describe", "ns", "other").out


def test_label_annotate_overwrite_and_remove(seeded):
    assert kctl(seeded, "label", "pods", "web-2", "tier=fe").out == "pod/web-2 labeled\n"
    r = kctl(seeded, "label", "pods", "web-2", "tier=be")
    assert r.code == 1 and r.err == "error: 'tier' already has a value (fe), and --overwrite is false\n"
    assert kctl(seeded, "label", "pods", "web-2", "tier=be", "--overwrite").out == "pod/web-2 labeled\n"
    assert kctl(seeded, "label", "pod/web-2", "tier-").out == "pod/web-2 unlabeled\n"
    assert kctl(seeded, "annotate", "pods", "web-2", "note=hi").out == "pod/web-2 annotated\n"
    p = call(seeded, lambda c: c.get("pods", "web-2", "default"))
    assert "tier" not in p.metadata.labels and p.metadata.annotations["note"] == "hi"
    r = kctl(seeded, "label", "pods", "web-2", "bad key=x")
    assert r.code == 1 and r.err.startswith('The Pod "web-2" is invalid: metadata.labels')


def test_taint_cordon_uncordon(seeded):
    assert kctl(seeded, "taint", "nodes", "n1", "dedicated=gpu:NoSchedule").out == "node/n1 tainted\n"
    r = kctl(seeded, "taint", "nodes", "n1", "dedicated=cpu:NoSchedule")
    assert r.code == 1 and "already has dedicated taint(s) with same effect(s) and --overwrite is false" in r.err
    assert kctl(seeded, "taint", "nodes", "n1", "dedicated=cpu:NoSchedule", "--overwrite").code == 0
    assert kctl(seeded, "taint", "node", "n1", "maint:NoExecute").code == 0
    n = call(seeded, lambda c: c.get("nodes", "n1"))
    assert [(t.key, t.value, t.effect) for t in n.spec.taints] == [("dedicated", "cpu", "NoSchedule"),
                                                                    ("maint", "", "NoExecute")]
    assert kctl(seeded, "taint", "nodes", "n1", "dedicated-").out == "node/n1 untainted\n"
    assert kctl(seeded, "taint", "nodes", "n1", "maint:NoExecute-").out == "node/n1 untainted\n"
    r = kctl(seeded, "taint", "nodes", "n1", "maint:NoExecute-")
    assert r.code == 1 and r.err == 'error: taint "maint:NoExecute" not found\n'
    assert kctl(seeded, "cordon", "n2").out == "node/n2 cordoned\n"
    assert kctl(seeded, "cordon", "n2").out == "node/n2 already cordoned\n"
    assert "Unknown,SchedulingDisabled" in kctl(seeded, "get", "node", "n2").out
    assert kctl(seeded, "uncordon", "n2").out == "node/n2 uncordoned\n"


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: main, image: "img:1"}]}
"""


def test_scale_and_set_image(seeded):
    assert kctl(seeded, "apply", "-f", "-", input=DEPLOY).code == 0
    assert kctl(seeded, "scale", "--replicas", "4", "deploy/app").out == "deployment.apps/app scaled\n"
    r = kctl(seeded, "scale", "--replicas", "2", "--current-replicas", "3", "deployment", "app")
    assert r.code == 1 and r.err == "error: Expected replicas to be 3, was 4\n"
    assert kctl(seeded, "set", "image", "deploy/app", "main=img:2").out == "deployment.apps/app image updated\n"
    r = kctl(seeded, "set", "image", "deploy/app", "nope=img:2")
    assert r.code == 1 and r.err == 'error: unable to find container named "nope"\n'
    d = call(seeded, lambda c: c.get("deploy", "app", "default"))
    assert d.spec.replicas == 4 and d.spec.template.spec.containers[0].image == "img:2"
    assert kctl(seeded, "get", "deploy", "app").out.splitlines()[1].split()[:2] == ["app", "0/4"]


def test_rollout_history_and_undo_with_replicasets(seeded):
    """No controller runs here: the ReplicaSets a deployment controller would
    make are created by hand, with owner references and revisions."""
    assert kctl(seeded, "apply", "-f", "-", input=DEPLOY.replace("name: app}", "name: ro}")
                .replace("app: app", "app: ro")).code == 0
    d = call(seeded, lambda c: c.get("deploy", "ro", "default"))
    for rev, img in ((1, "img:1"), (2, "img:2")):
        rs = codec.from_dict({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"ro-{rev}", "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "ro",
                                              "uid": d.metadata.uid, "controller": True}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "ro", "pod-template-hash": str(rev)}},
                     "template": {"metadata": {"labels": {"app": "ro", "pod-template-hash": str(rev)}},
                                  "spec": {"containers": [{"name": "main", "image": img}]}}}})
        rs.metadata.namespace = "default"
        call(seeded, lambda c: c.create(rs))
    r = kctl(seeded, "rollout", "history", "deploy/ro")
    assert r.out.splitlines() == ["deployment.apps/ro", "REVISION  CHANGE-CAUSE", "1         <none>",
                                  "2         <none>"]
    assert "img:2" in kctl(seeded, "rollout", "history", "deploy/ro", "--revision", "2").out
    assert kctl(seeded, "set", "image", "deploy/ro", "main=img:2").code == 0
    assert kctl(seeded, "rollout", "undo", "deploy/ro").out == "deployment.apps/ro rolled back\n"
    d = call(seeded, lambda c: c.get("deploy", "ro", "default"))
    assert d.spec.template.spec.containers[0].image == "img:1"
    assert "pod-template-hash" not in d.spec.template.metadata.labels
    r = kctl(seeded, "rollout", "undo", "deploy/ro", "--to-revision", "1")
    assert "skipped rollback (current template already matches revision 1)" in r.out
    assert kctl(seeded, "rollout", "undo", "deploy/ro", "--to-revision", "9").err == \
        "error: unable to find the specified revision\n"
    assert kctl(seeded, "rollout", "pause", "deploy/ro").out == "deployment.apps/ro paused\n"
    assert kctl(seeded, "rollout", "restart", "deploy/ro").code == 1
    assert kctl(seeded, "rollout", "resume", "deploy/ro").out == "deployment.apps/ro resumed\n"
    assert kctl(seeded, "rollout", "restart", "deploy/ro").out == "deployment.apps/ro restarted\n"
    d = call(seeded, lambda c: c.get("deploy", "ro", "default"))
    assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations


def test_delete_graceful_then_forced(seeded):
    assert kctl(seeded, "apply", "-f", "-", input=pod_yaml("del-1") + "---\n" + pod_yaml("del-2")).code == 0
    assert kctl(seeded, "delete", "pod", "del-1").out == 'pod "del-1" deleted\n'
    assert kctl(seeded, "get", "pod", "del-1").code == 1
    call(seeded, lambda c: c.bind("default", "del-2", "n1"))
    r = kctl(seeded, "delete", "pod", "del-2", "--grace-period", "30", "--no-wait")
    assert r.out == 'pod "del-2" deleted\n'
    assert kctl(seeded, "get", "pod", "del-2").out.splitlines()[1].split()[2] == "Terminating"
    r = kctl(seeded, "delete", "pod", "del-2", "--grace-period=0", "--force")
    assert r.code == 0 and r.out == 'pod "del-2" force deleted\n'
    assert r.err.startswith("Warning: Immediate deletion does not wait for confirmation")
    assert kctl(seeded, "get", "pod", "del-2").code == 1
    r = kctl(seeded, "delete", "pod", "del-2")
    assert r.code == 1 and r.err == 'Error from server (NotFound): pods "del-2" not found\n'
    assert kctl(seeded, "delete", "pod", "del-2", "--ignore-not-found").code == 0
    r = kctl(seeded, "delete", "pods")
    assert r.code == 1 and "no name was specified" in r.err


def test_delete_by_selector_and_file(seeded, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(pod_yaml("sel-1", "{app: sel}") + "---\n" + pod_yaml("sel-2", "{app: sel}"))
    assert kctl(seeded, "apply", "-f", str(f)).code == 0
    assert kctl(seeded, "delete", "pods", "-l", "app=sel").out == 'pod "sel-1" deleted\npod "sel-2" deleted\n'
    assert kctl(seeded, "apply", "-f", str(f)).code == 0
    assert kctl(seeded, "delete", "-f", str(f)).out == 'pod "sel-1" deleted\npod "sel-2" deleted\n'


def test_api_resources_and_version(seeded):
    out = kctl(seeded, "api-resources").out.splitlines()
    assert out[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert re.search(r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$", "\n".join(out), re.M)
    r = kctl(seeded, "version")
    assert r.out.startswith("Client Version: v0.1.0\nServer Version: ")


def test_console_script_exit_codes(seeded):
    r = kctl_subprocess("--server", seeded, "get", "pod", "web-1", "-o", "name")
    assert (r.code, r.out) == (0, "pod/web-1\n")
    r = kctl_subprocess("get", "pod", "missing", env={"KCTL_SERVER": seeded})
    assert (r.code, r.err) == (1, 'Error from server (NotFound): pods "missing" not found\n')
    r = kctl_subprocess("get", "--bogus-flag", env={"KCTL_SERVER": seeded})
    assert r.code == 2 and "No such option" in r.err


def test_unreachable_server_is_one_line(tmp_path):
    from tests.cluster import free_port
    port = free_port()
    for args in (["get", "pods"], ["apply", "-f", "-"], ["version"], ["describe", "pod", "x"]):
        r = kctl_subprocess("--server", f"127.0.0.1:{port}", *args, input=pod_yaml("x"))
        assert r.code == 1, (args, r)
        assert r.err == f"error: cannot reach the apiserver at 127.0.0.1:{port}: connection refused\n", (args, r)
        assert r.out == ""
    cfg = tmp_path / "config"
    cfg.write_text(f"clusters: [{{name: c, cluster: {{server: '127.0.0.1:{port}'}}}}]\n"
                   "contexts: [{name: c, context: {cluster: c}}]\ncurrent-context: c\n")
    r = kctl_subprocess("get", "pods", env={"KUBECONFIG": str(cfg), "KCTL_SERVER": ""})
    assert r.code == 1 and r.err.count("\n") == 1 and f"127.0.0.1:{port}" in r.err


def test_get_jsonpath(seeded):
    assert kctl(seeded, "get", "pod", "web-1", "-o", "jsonpath={.metadata.labels.app}").out == "web"
    r = kctl(seeded, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}")
    assert r.out == "web-1 web-2"
    r = kctl(seeded, "get", "pods", "-o", "yamll")
    assert r.code == 1 and 'unable to match a printer suitable for the output format "yamll"' in r.err


def test_wait(seeded):
    r = kctl(seeded, "wait", "--for=condition=Ready", "pod/web-1", "--timeout", "0.5s")
    assert r.code == 1 and r.err == "error: timed out waiting for the condition on pods/web-1\n"
    r = kctl(seeded, "wait", "--for=jsonpath={.status.phase}=Pending", "pods", "-l", "app=web")
    assert (r.code, r.out) == (0, "pod/web-1 condition met\npod/web-2 condition met\n")
    assert kctl(seeded, "wait", "--for=delete", "pod/never-was").out == "pod/never-was deleted\n"
    assert kctl(seeded, "wait", "--for=bogus", "pod/web-1").code == 1


def test_run_create_deployment_expose(seeded):
    assert kctl(seeded, "create", "ns", "gen").out == "namespace/gen created\n"
    r = kctl(seeded, "-n", "gen", "create", "deployment", "hello", "--image=nginx:1.25", "--replicas", "2",
             "--port", "80")
    assert r.out == "deployment.apps/hello created\n", r
    d = call(seeded, lambda c: c.get("deploy", "hello", "gen"))
    assert d.spec.replicas == 2 and d.spec.selector.match_labels["app"] == "hello"
    assert d.spec.template.spec.containers[0].name == "nginx"
    assert kctl(seeded, "expose", "deploy/hello", "-n", "gen", "--type", "NodePort").out == "service/hello exposed\n"
    s = call(seeded, lambda c: c.get("svc", "hello", "gen"))
    assert s.spec.type == "NodePort" and s.spec.ports[0].port == 80 and s.spec.ports[0].node_port
    assert dict(s.spec.selector) == {"app": "hello"}
    assert kctl(seeded, "run", "tmp", "-n", "gen", "--image", "busybox", "--restart", "Never",
                "--", "sleep", "10").out == "pod/tmp created\n"
    p = call(seeded, lambda c: c.get("pods", "tmp", "gen"))
    assert list(p.spec.containers[0].args) == ["sleep", "10"] and p.metadata.labels["run"] == "tmp"
    assert p.spec.restart_policy == "Never"
    y = kctl(seeded, "run", "gen2", "--image", "busybox", "--dry-run=client", "-o", "yaml").out
    assert "kind: Pod" in y and kctl(seeded, "get", "pod", "gen2").code == 1
    assert kctl(seeded, "apply", "-f", "-", input=y).out == "pod/gen2 created\n"


def test_get_sort_by(seeded):
    r = kctl(seeded, "get", "pods", "-l", "app in (web,db)", "--sort-by=.metadata.name", "-o", "name")
    assert r.out == "pod/db-1\npod/web-1\npod/web-2\n", r
    for i, n in enumerate(("db-1", "web-1", "web-2")):
        assert kctl(seeded, "annotate", "pod", n, f"order={3 - i}", "--overwrite").code == 0
    r = kctl(seeded, "get", "pods", "-l", "app in (web,db)", "--sort-by={.metadata.annotations.order}",
             "-o", "name")
    assert r.out == "pod/web-2\npod/web-1\npod/db-1\n"


def test_get_custom_columns(seeded):
    r = kctl(seeded, "get", "pods", "-l", "app=web", "-o",
             "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app,NODE:.spec.nodeName")
    assert [ln.split() for ln in r.out.splitlines()] == [["NAME", "APP", "NODE"], ["web-1", "web", "<none>"],
                                                         ["web-2", "web", "<none>"]]
