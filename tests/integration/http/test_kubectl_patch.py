"""kubectl's patches against the HTTP API: `patch` with each of the three
types, `apply --server-side` with a conflict and --force-conflicts, and
`diff`, the managedFields behind them recorded by every write."""
from __future__ import annotations

import json

import yaml

from tests.integration.http.test_kubectl import DEPLOY, DEPLOY_V2, ns


def managers(kube, n: str) -> list[tuple[str, str, str]]:
    md = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json", "--show-managed-fields"))["metadata"]
    return [(e["manager"], e["operation"], e.get("subresource", "")) for e in md["managedFields"]]


def test_patch_with_each_type(kube):
    n = ns(kube, "patch")
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    kube.ok("patch", "deploy", "web", "-n", n, "--type=json", "-p",
            '[{"op": "replace", "path": "/spec/replicas", "value": 4}]')
    kube.ok("patch", "deploy", "web", "-n", n, "--type=merge", "-p", '{"metadata": {"labels": {"m": "1"}}}')
    kube.ok("patch", "deploy", "web", "-n", n, "-p",
            '{"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}')
    got = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json"))
    assert got["spec"]["replicas"] == 4 and got["metadata"]["labels"] == {"app": "web", "m": "1"}
    assert [c["name"] for c in got["spec"]["template"]["spec"]["containers"]] == ["app"]
    err = kube.fails("patch", "deploy", "web", "-n", n, "--type=json", "-p",
                     '[{"op": "test", "path": "/spec/replicas", "value": 9}]')
    # 422 Invalid from NewGenericServerResponse; kubectl prints its UnexpectedServerResponse cause (empty field)
    assert err.strip() == "The request is invalid: : testing value /spec/replicas failed: test failed"
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.replicas}") == "4"


def test_server_side_apply_conflict_and_force(kube):
    n = ns(kube, "ssa")
    assert kube.ok("apply", "--server-side", "-n", n, "-f", "-", input=DEPLOY).strip() == \
        "deployment.apps/web serverside-applied"
    assert managers(kube, n) == [("kubectl", "Apply", "")]
    kube.ok("scale", "deploy/web", "-n", n, "--replicas=5")
    assert ("kubectl", "Update", "scale") in managers(kube, n)
    err = kube.fails("apply", "--server-side", "-n", n, "-f", "-", input=DEPLOY)
    assert 'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: ' \
           '.spec.replicas' in err
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.replicas}") == "5"
    kube.ok("apply", "--server-side", "--force-conflicts", "-n", n, "-f", "-", input=DEPLOY)
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.replicas}") == "2"
    kube.ok("apply", "--server-side", "-n", n, "-f", "-", input=DEPLOY_V2)      # drops a container it applied
    names = kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.template.spec.containers[*].name}")
    assert names == "app"


def test_diff_shows_what_apply_would_change(kube):
    n = ns(kube, "diff")
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    changed = yaml.safe_load(DEPLOY)
    changed["spec"]["replicas"] = 3
    r = kube.kubectl("diff", "-n", n, "-f", "-", input=yaml.safe_dump(changed))
    assert r.returncode == 1, r.stderr                     # 1: differences found
    assert "-  replicas: 2\n+  replicas: 3" in r.stdout
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.replicas}") == "2"


def test_set_image_rollout_pause_resume_restart_and_edit(kube, tmp_path):
    n = ns(kube, "edit")
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    assert kube.ok("set", "image", "deploy/web", "app=nginx:1.29", "-n", n).strip() == \
        "deployment.apps/web image updated"
    assert kube.ok("rollout", "pause", "deploy/web", "-n", n).strip() == "deployment.apps/web paused"
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.paused}") == "true"
    assert kube.ok("rollout", "resume", "deploy/web", "-n", n).strip() == "deployment.apps/web resumed"
    assert kube.ok("rollout", "restart", "deploy/web", "-n", n).strip() == "deployment.apps/web restarted"
    got = json.loads(kube.ok("get", "deploy", "web", "-n", n, "-o", "json"))
    assert got["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.29"
    assert "kubectl.kubernetes.io/restartedAt" in got["spec"]["template"]["metadata"]["annotations"]
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/replicas: 2/replicas: 7/" "$1"\n')
    editor.chmod(0o755)
    r = kube.kubectl("edit", "deploy/web", "-n", n, env={"KUBE_EDITOR": str(editor)})
    assert r.returncode == 0 and r.stdout.strip() == "deployment.apps/web edited", r.stderr
    assert kube.ok("get", "deploy", "web", "-n", n, "-o", "jsonpath={.spec.replicas}") == "7"
